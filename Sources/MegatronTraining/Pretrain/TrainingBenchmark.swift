import Foundation
import MegatronCore
import MegatronParallel
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
    /// With pipeline parallelism: how long per iteration this rank's compute stood waiting for its stage's
    /// transfers (`CommunicationWaitClock`), in milliseconds: the bubble, plus transfer time not hidden.
    public var pipelineWaitMilliseconds: Double?
    /// With expert parallelism and the all-to-all dispatcher: how long per iteration the compute waited for
    /// the dispatcher's all-to-alls (forward and backward), in milliseconds.
    public var allToAllWaitMilliseconds: Double?

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
        let waitClock = try pipelineSchedule.map { _ in try CommunicationWaitClock(device: device) }
        pipelineSchedule?.waitClock = waitClock
        let expertLayers = parallel.expert.size > 1 ? model.moeLayers.filter { $0.expertParallel.dispatcher == .alltoall } : []
        let dispatchClock = try expertLayers.isEmpty ? nil : CommunicationWaitClock(device: device)
        for layer in expertLayers { layer.dispatchWaitClock = dispatchClock }
        defer {
            pipelineSchedule?.waitClock = nil
            for layer in expertLayers { layer.dispatchWaitClock = nil }
        }
        let context = device.ordinal.flatMap { try? CUDAContext.shared(ordinal: $0) }
        try? context?.synchronize()
        context?.allocator.resetPeakStatistics()
        context?.profile?.reset()
        let started = Date()
        for _ in 0..<iterations { try step() }
        try? context?.synchronize()
        let seconds = Date().timeIntervalSince(started) / Double(max(iterations, 1))
        let waitMilliseconds = try waitClock.map { try $0.takeSeconds() * 1000 / Double(max(iterations, 1)) }
        let allToAllMilliseconds = try dispatchClock.map { try $0.takeSeconds() * 1000 / Double(max(iterations, 1)) }
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
                                 profile: context?.profile?.summary(), pipelineWaitMilliseconds: waitMilliseconds,
                                 allToAllWaitMilliseconds: allToAllMilliseconds)
    }

    /// Every rank's figures, gathered over the world: on world rank 0 a table with a row per rank (its
    /// coordinates, pipeline wait, peak memory) under the pipeline's bubble bounds and a `bench:` line of the
    /// job's totals for scripts; nil on the other ranks. Every rank must call it (it is a collective).
    public func rankReport(_ result: TrainingBenchmark) throws -> String? {
        let world = parallel.world
        let mine: [Float] = [Float(parallel.tensorRank), Float(parallel.pipelineRank), Float(parallel.dataRank),
                             Float(parallel.expertRank), Float(result.millisecondsPerIteration),
                             Float(result.pipelineWaitMilliseconds ?? -1), Float(result.peakDeviceMemoryMiB?.allocated ?? -1),
                             Float(result.peakDeviceMemoryMiB?.reserved ?? -1), Float(result.peakMemoryMiB),
                             Float(result.allToAllWaitMilliseconds ?? -1)]
        let all = Tensor.zeros([world.size, mine.count], dtype: .float32, device: device)
        try world.allGather(Tensor(shape: [1, mine.count], values: mine).to(device), into: all).wait()
        guard world.rank == 0 else { return nil }
        let rows = all.to(.cpu).floats().chunked(mine.count)
        return RankBenchmarkReport(rows: rows, result: result, worldSize: world.size, stages: parallel.pipeline.size,
                                   chunks: model.stage.chunks.count,
                                   microBatches: schedule.globalBatchSize / (arguments.microBatchSize * parallel.data.size)).text
    }
}

/// The per-rank table of `Pretrainer.rankReport`.
struct RankBenchmarkReport {
    /// Per world rank: tp, pp, dp, ep, ms/iter, pipeline wait ms (-1: none), peak allocated, peak reserved (-1: CPU),
    /// host MiB, all-to-all wait ms (-1: none).
    let rows: [[Float]]
    let result: TrainingBenchmark
    let worldSize: Int, stages: Int, chunks: Int, microBatches: Int

    var text: String {
        var lines: [String] = []
        let waits = rows.map { $0[5] }.filter { $0 >= 0 }, allToAll = rows.map { $0[9] }.filter { $0 >= 0 }
        if stages > 1 {
            let bound = Double(stages - 1) / Double(microBatches + stages - 1)
            let interleaved = Double(stages - 1) / Double(chunks * microBatches + stages - 1)
            lines.append(String(format: "pipeline: PP=%d, %d chunk(s) per rank, m=%d micro-batches: 1F1B bubble bound (p-1)/(m+p-1) = %.1f%%",
                                stages, chunks, microBatches, bound * 100)
                + (chunks > 1 ? String(format: ", interleaved (p-1)/(v*m+p-1) = %.1f%%", interleaved * 100) : ""))
        }
        lines.append("rank  tp  pp  dp  ep   ms/iter  p2p-wait-ms  wait%  a2a-wait-ms  a2a%   peak-alloc-MiB  peak-reserved-MiB  host-MiB")
        for (rank, r) in rows.enumerated() {
            func share(_ ms: Float) -> String {
                ms >= 0 ? String(format: "%11.1f  %5.1f", ms, 100 * ms / max(r[4], 1e-6)) : "          -      -"
            }
            let wait = share(r[5]) + "  " + share(r[9])
            let memory = r[6] >= 0 ? String(format: "%14.0f  %17.0f", r[6], r[7]) : "             -                  -"
            lines.append(String(format: "%4d %3.0f %3.0f %3.0f %3.0f %9.1f  ", rank, r[0], r[1], r[2], r[3], r[4]) + wait
                + "  " + memory + String(format: "  %8.0f", r[8]))
        }
        let milliseconds = result.millisecondsPerIteration
        let bubbleBound = stages > 1 ? 100 * Double(stages - 1) / Double(chunks * microBatches + stages - 1) : 0
        let fields: [(String, String, Double)] = [
            ("world", "%.0f", Double(worldSize)), ("ms_per_iter", "%.1f", milliseconds),
            ("tokens_per_s", "%.0f", result.tokensPerSecond), ("tokens_per_s_per_gpu", "%.0f", result.tokensPerSecond / Double(worldSize)),
            ("tflops_per_gpu", "%.2f", result.teraflops / Double(worldSize)),
            ("peak_alloc_mib_max", "%.0f", Double(rows.map { $0[6] }.max() ?? -1)),
            ("p2p_wait_pct_max", "%.1f", waits.map { 100 * Double($0) / milliseconds }.max() ?? -1),
            ("bubble_bound_pct", "%.1f", bubbleBound),
            ("a2a_wait_pct_mean", "%.1f", allToAll.isEmpty ? -1 : 100 * Double(allToAll.reduce(0, +)) / Double(allToAll.count) / milliseconds),
        ]
        lines.append("bench: " + fields.map { "\($0.0)=" + String(format: $0.1, $0.2) }.joined(separator: " "))
        return lines.joined(separator: "\n")
    }
}

private extension Array {
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
