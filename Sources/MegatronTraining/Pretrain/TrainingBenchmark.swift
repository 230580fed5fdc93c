import Foundation
import MegatronCore

/// Timing of whole training iterations (forward, backward, clipping, optimizer step).
public struct TrainingBenchmark {
    public var millisecondsPerIteration: Double
    public var tokensPerSecond: Double
    /// Model TFLOP/s by Megatron's FLOPs formula.
    public var teraflops: Double
    /// Peak resident memory of the process, in MiB.
    public var peakMemoryMiB: Double

    public var summary: String {
        String(format: "%.1f ms/iter | %.0f tokens/s | %.3f TFLOP/s | peak memory %.0f MiB",
               millisecondsPerIteration, tokensPerSecond, teraflops, peakMemoryMiB)
    }
}

extension Pretrainer {
    /// Runs `warmup` untimed then `iterations` timed training iterations and reports their speed.
    public func benchmark(warmup: Int, iterations: Int) -> TrainingBenchmark {
        var consumed = 0
        func step() {
            _ = trainStep(consumedSamples: consumed)
            consumed += schedule.globalBatchSize
        }
        for _ in 0..<warmup { step() }
        let started = Date()
        for _ in 0..<iterations { step() }
        let seconds = Date().timeIntervalSince(started) / Double(max(iterations, 1))
        let tokens = Double(schedule.globalBatchSize * arguments.seqLength)
        let flops = trainingFLOPs(config: model.config, vocabSize: model.vocabSize, sequenceLength: arguments.seqLength,
                                  batchSize: schedule.globalBatchSize)
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return TrainingBenchmark(millisecondsPerIteration: seconds * 1000, tokensPerSecond: tokens / seconds,
                                 teraflops: flops / seconds / 1e12, peakMemoryMiB: Double(usage.ru_maxrss) / 1024)
    }
}
