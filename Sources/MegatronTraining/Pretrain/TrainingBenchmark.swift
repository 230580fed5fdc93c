import Foundation
import MegatronCore
import MegatronTensor

/// Timing of whole training iterations (forward, backward, clipping, optimizer step).
public struct TrainingBenchmark {
    public var millisecondsPerIteration: Double
    public var tokensPerSecond: Double
    /// Model TFLOP/s by Megatron's FLOPs formula.
    public var teraflops: Double
    /// Peak resident memory of the process, in MiB.
    public var peakMemoryMiB: Double
    /// On a GPU: the caching allocator's peak allocated and peak reserved bytes over the timed steps, in MiB.
    public var peakDeviceMemoryMiB: (allocated: Double, reserved: Double)?
    /// On a GPU with MEGATRON_PROFILE=1: the per-op table of the timed steps.
    public var profile: String?

    public var summary: String {
        let memory = peakDeviceMemoryMiB.map {
            String(format: "peak GPU memory %.0f MiB allocated, %.0f MiB reserved | host %.0f MiB", $0.allocated, $0.reserved,
                   peakMemoryMiB)
        } ?? String(format: "peak memory %.0f MiB", peakMemoryMiB)
        let line = String(format: "%.1f ms/iter | %.0f tokens/s | %.3f TFLOP/s | ", millisecondsPerIteration, tokensPerSecond,
                          teraflops) + memory
        return profile.map { line + "\n" + $0 } ?? line
    }
}

extension Pretrainer {
    /// Runs `warmup` untimed then `iterations` timed training iterations of the whole global batch (no
    /// ramp-up) and reports their speed.
    public func benchmark(warmup: Int, iterations: Int) throws -> TrainingBenchmark {
        var consumed = 0
        func step() throws {
            _ = try trainStep(consumedSamples: consumed, batchSize: schedule.globalBatchSize)
            consumed += schedule.globalBatchSize
        }
        for _ in 0..<warmup { try step() }
        let context = device.ordinal.flatMap { try? CUDAContext.shared(ordinal: $0) }
        try? context?.synchronize()
        context?.allocator.resetPeakStatistics()
        context?.profile?.reset()
        let started = Date()
        for _ in 0..<iterations { try step() }
        try? context?.synchronize()
        let seconds = Date().timeIntervalSince(started) / Double(max(iterations, 1))
        let tokens = Double(schedule.globalBatchSize * arguments.seqLength)
        let flops = trainingFLOPs(config: model.config, vocabSize: model.vocabSize, sequenceLength: arguments.seqLength,
                                  batchSize: schedule.globalBatchSize)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return TrainingBenchmark(millisecondsPerIteration: seconds * 1000, tokensPerSecond: tokens / seconds,
                                 teraflops: flops / seconds / 1e12, peakMemoryMiB: Double(usage.ru_maxrss) / 1024,
                                 peakDeviceMemoryMiB: context.map {
                                     (Double($0.allocator.statistics.peakAllocatedBytes) / 1048576,
                                      Double($0.allocator.statistics.peakReservedBytes) / 1048576)
                                 },
                                 profile: context?.profile?.summary())
    }
}
