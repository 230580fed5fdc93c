import MegatronCUDA

/// Median milliseconds per call of `body` on `stream`, timed by CUDA events: `warmupMs` of untimed calls,
/// then `trials` trials of about `trialMs` each (at least 5 calls a trial).
func medianMilliseconds(stream: CUDAStream, device: CUDADevice, warmupMs: Double, trialMs: Double, trials: Int,
                        _ body: () throws -> Void) throws -> Double {
    let begin = try CUDAEvent(device: device), end = try CUDAEvent(device: device)
    func timed(_ runs: Int) throws -> Double {
        try begin.record(on: stream)
        for _ in 0..<runs { try body() }
        try end.record(on: stream)
        try end.synchronize()
        return try end.elapsedMilliseconds(since: begin) / Double(runs)
    }
    let single = max(try timed(2), 1e-3)
    _ = try timed(Int((warmupMs / single).rounded(.up)))
    let runs = max(5, Int((trialMs / single).rounded(.up)))
    let samples = try (0..<trials).map { _ in try timed(runs) }
    return samples.sorted()[samples.count / 2]
}
