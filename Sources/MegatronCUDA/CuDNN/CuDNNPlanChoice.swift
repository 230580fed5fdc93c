import Foundation

/// The execution plans cuDNN's heuristic offers for one graph (best first) and the one that runs.
/// With one candidate that one runs. With several, the first call times each on its real operands
/// and keeps the fastest (cudnn-frontend's autotune): the heuristic's first choice is not always the
/// fastest engine for the problem at hand, and a plan serves every later call of its shape.
///
///     let choice = CuDNNPlanChoice(candidates)
///     let plan = try choice.plan(stream: stream) { candidate in try enqueue(candidate) }
final class CuDNNPlanChoice {
    let candidates: [CuDNNExecutionPlan]
    private let lock = NSLock()
    private var chosen: Int?
    /// Each candidate's time per run in milliseconds (infinity: it failed to run), once timed.
    private var milliseconds: [Double] = []

    /// Timed runs of each candidate, after one untimed run that warms it up.
    static let timedRuns = 3

    init(_ candidates: [CuDNNExecutionPlan]) {
        precondition(!candidates.isEmpty, "CuDNNPlanChoice needs a candidate")
        self.candidates = candidates
        chosen = candidates.count == 1 ? 0 : nil
    }

    /// Workspace bytes the next call needs: the chosen plan's, or before the choice every candidate's most.
    var workspaceBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return chosen.map { candidates[$0].workspaceBytes } ?? candidates.map(\.workspaceBytes).max()!
    }

    /// The plan to run. The first call with several candidates runs each through `enqueue` (which
    /// enqueues one run of a plan on `stream`, its operands bound) 1 + `timedRuns` times, waits for
    /// them, and keeps the fastest; the caller then runs the returned plan once more for its result.
    func plan(stream: CUDAStream, enqueue: (CuDNNExecutionPlan) throws -> Void) throws -> CuDNNExecutionPlan {
        lock.lock()
        defer { lock.unlock() }
        if let chosen { return candidates[chosen] }
        var failure: Error?
        milliseconds = try candidates.map { candidate in
            do {
                return try time(candidate, stream: stream, enqueue: enqueue)
            } catch {
                failure = failure ?? error
                return .infinity
            }
        }
        let fastest = milliseconds.indices.min { milliseconds[$0] < milliseconds[$1] }!
        if milliseconds[fastest] == .infinity, let failure { throw failure }
        chosen = fastest
        return candidates[fastest]
    }

    private func time(_ plan: CuDNNExecutionPlan, stream: CUDAStream, enqueue: (CuDNNExecutionPlan) throws -> Void) throws -> Double {
        let start = try CUDAEvent(device: stream.device), end = try CUDAEvent(device: stream.device)
        try enqueue(plan)
        try start.record(on: stream)
        for _ in 0..<Self.timedRuns { try enqueue(plan) }
        try end.record(on: stream)
        try end.synchronize()
        return try end.elapsedMilliseconds(since: start) / Double(Self.timedRuns)
    }

    /// "0.412 0.388* ms" (the chosen one starred), or nil before timing or with one candidate.
    var timings: String? {
        lock.lock()
        defer { lock.unlock() }
        guard !milliseconds.isEmpty else { return nil }
        return milliseconds.indices.map { String(format: "%.3f", milliseconds[$0]) + ($0 == chosen ? "*" : "") }
            .joined(separator: " ") + " ms"
    }
}
