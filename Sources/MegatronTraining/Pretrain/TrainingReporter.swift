import Foundation
import MegatronCore
import MegatronParallel
import MegatronTensor

/// What a training run prints and records as it goes, as Megatron's `training_log` and
/// `evaluate_and_print_results` do: the iteration line every `--log-interval` iterations (and after the run's
/// first and last), the memory report, the timer report, TensorBoard scalars every
/// `--tensorboard-log-interval` iterations, the validation lines, and `progress.txt`.
///
/// Every rank calls it at the same points: the timer report is a collective. Only rank 0 prints and writes
/// files, except the per-rank lines Megatron prints on each data-parallel rank 0 (memory).
final class TrainingReporter {
    let arguments: PretrainArguments
    /// Rank 0's console; a no-op elsewhere.
    let log: (String) -> Void
    /// The console of a data-parallel rank 0 (Megatron's per-rank lines); a no-op elsewhere.
    let rankLog: (String) -> Void
    let rank: Int
    let worldSize: Int
    let device: Device
    let metrics: MetricsLog?
    let timers: TrainingTimers
    let progress: ProgressLog?
    /// Floating-point operations of every iteration so far (loaded checkpoints' included), and when this job
    /// started with how many: the progress log's throughputs.
    var flopsSoFar = 0.0
    private(set) var flopsAtJobStart = 0.0
    private let jobStarted = Date()
    private var interval = IntervalStats()
    private var startIteration = 0
    private var reportsMemory = true

    init(arguments: PretrainArguments, log: @escaping (String) -> Void, rankLog: @escaping (String) -> Void,
         parallel: ParallelState, device: Device) throws {
        self.arguments = arguments
        self.log = log
        self.rankLog = rankLog
        rank = parallel.world.rank
        let worldSize = parallel.world.size
        self.worldSize = worldSize
        self.device = device
        timers = TrainingTimers(level: arguments.timingLogLevel, option: arguments.timingLogOption,
                                barrier: arguments.barrierWithL1Time, device: device, world: parallel.world)
        let writes = rank == 0
        if writes, let directory = arguments.tensorboardDir {
            log("> setting tensorboard ...")
            metrics = try MetricsLog(directory: directory, queueSize: arguments.tensorboardQueueSize)
        } else {
            metrics = nil
        }
        progress = writes && arguments.logProgress ? arguments.save.map { ProgressLog(directory: $0, worldSize: worldSize) } : nil
    }

    /// Marks where this job's training starts (after a checkpoint is loaded).
    func trainingStarts(at iteration: Int) throws {
        startIteration = iteration
        flopsAtJobStart = flopsSoFar
        try progress?.append("Starting job")
    }

    /// Whether `iteration` prints the iteration line: every `--log-interval`, the job's first, and the last.
    func printsLine(_ iteration: Int, of trainIters: Int) -> Bool {
        iteration % arguments.logInterval == 0 || iteration == startIteration + 1 || iteration == trainIters
    }

    /// Whether `iteration` records TensorBoard scalars (decided from the flags alone, the same on every rank).
    func recordsScalars(_ iteration: Int) -> Bool {
        arguments.tensorboardDir != nil && iteration % arguments.tensorboardLogInterval == 0
    }

    /// Whether the optional statistics (`--log-params-norm`, `--log-num-zeros-in-grad`) are measured at
    /// `iteration`: only where the line or TensorBoard shows them.
    func measuresStatistics(_ iteration: Int, of trainIters: Int) -> Bool {
        printsLine(iteration, of: trainIters) || recordsScalars(iteration)
    }

    /// Prints and records one finished iteration; returns the interval's mean loss when a line was printed.
    func iterationFinished(_ report: IterationReport) throws -> Double? {
        interval.add(report.step, seconds: report.seconds)
        flopsSoFar += report.flops
        if recordsScalars(report.iteration) { recordScalars(report) }
        recordMoELosses(report)
        guard printsLine(report.iteration, of: report.trainIters) else { return nil }
        // As Megatron, the job's first line does not restart the averages, so the first interval's line covers
        // the whole interval; at --log-interval 1 each line is its own iteration (Megatron's second line would
        // average the first two).
        let first = report.iteration == startIteration + 1
        let reset = !first || arguments.logInterval == 1
        let perIteration = interval.seconds / Double(max(interval.iterations, 1))
        let throughput = report.flops / Double(worldSize) / perIteration / 1e12
        log(interval.entry(report, throughput: arguments.logThroughput ? throughput : nil,
                           moeLossNames: arguments.moeLoggedLossNames).formatted())
        let meanLoss = interval.meanLoss
        if reset { interval = IntervalStats() }
        reportMemory(after: report.iteration)
        if arguments.logTimersToTensorboard {
            // Megatron leaves the job's first iteration time out of TensorBoard (it carries start-up work).
            var values = first ? [] : [("iteration-time", perIteration)]
            if arguments.logThroughput { values.append(("throughput", throughput)) }
            metrics?.record(values, iteration: report.iteration)
        }
        let timed = try timerReport(TrainingTimers.iterationTimers(level: arguments.timingLogLevel),
                                    normalizer: Double(arguments.logInterval), reset: reset)
        if arguments.logTimersToTensorboard, !timed.isEmpty {
            metrics?.record(timed.map { ($0.0 + "-time", $0.1) }, iteration: report.iteration)
        }
        return meanLoss
    }

    /// Megatron's evaluation lines and scalars: `name` is `validation` (or `test`, ours), `prefix` the
    /// line's `iteration N...` part.
    func evaluationFinished(loss: Double, name: String, prefix: String, iteration: Int, consumedSamples: Int) {
        let line = validationLogLine(prefix: prefix, loss: loss)
        let rule = String(repeating: "-", count: line.count + 1)
        log(rule)
        log(line)
        log(rule)
        let perplexity = exp(min(20, loss))
        var values = [("lm loss \(name)", loss)]
        if arguments.logValidationPplToTensorboard { values.append(("lm loss \(name) ppl", perplexity)) }
        metrics?.record(values, iteration: iteration, samples: consumedSamples, againstSamples: Set(values.map(\.0)))
    }

    /// After a checkpoint is saved (every rank): the save timer's report and the progress line.
    func checkpointSaved(iteration: Int, consumedSamples: Int) throws {
        // What TensorBoard holds reaches the disk with the checkpoint, so a resumed run continues it.
        metrics?.flush()
        _ = try timerReport(["save-checkpoint"])
        try progress?.appendCheckpoint(iteration: iteration, flops: flopsSoFar, flopsAtJobStart: flopsAtJobStart,
                                       jobStarted: jobStarted, tokens: consumedSamples * arguments.seqLength)
    }

    /// Prints the timer report of `names` (Megatron logs it at INFO through Python's logging, hence the prefix;
    /// `--logging-level` above INFO hides it) and returns each timer's maximum over the ranks. A collective.
    @discardableResult
    func timerReport(_ names: [String], normalizer: Double = 1, reset: Bool = true) throws -> [(String, Double)] {
        let (text, maxima) = try timers.report(names, normalizer: normalizer, reset: reset)
        if let text, (arguments.loggingLevel ?? 20) <= 20 { log("INFO:megatron.core.timers:" + text) }
        return maxima
    }

    /// Writes everything still queued for TensorBoard (at the end of a run; otherwise the queue and checkpoints
    /// decide).
    func flush() { metrics?.flush() }

    /// Megatron's per-iteration scalars, each also against the consumed samples.
    private func recordScalars(_ report: IterationReport) {
        var values: [(String, Double)] = [("learning-rate", Double(report.learningRate)),
                                          ("batch-size", Double(report.globalBatchSize)), ("lm loss", report.step.loss)]
        if arguments.logLossScaleToTensorboard { values.append(("loss-scale", Double(report.lossScale))) }
        if arguments.logWorldSizeToTensorboard { values.append(("world-size", Double(worldSize))) }
        if report.step.updated { values.append(("grad-norm", Double(report.step.gradNorm))) }
        if let zeros = report.numZeros { values.append(("num-zeros", Double(zeros))) }
        if let norm = report.paramsNorm { values.append(("params-norm", norm)) }
        let againstSamples = Set(values.map(\.0))
        if arguments.logMemoryToTensorboard { values += MemoryReport.current(on: device)?.scalars ?? [] }
        metrics?.record(values, iteration: report.iteration, samples: report.consumedSamples, againstSamples: againstSamples)
    }

    /// Megatron's MoE metrics tracker writes the iteration's aux losses (`load_balancing_loss`, `z_loss`, ...)
    /// under their own names at every iteration, whatever `--tensorboard-log-interval`.
    private func recordMoELosses(_ report: IterationReport) {
        let names = arguments.moeLoggedLossNames
        guard !names.isEmpty else { return }
        metrics?.record(names.map { ($0, report.step.moeLosses[$0] ?? 0) }, iteration: report.iteration)
    }

    /// `report_memory` after the job's first logged iteration and the next logged one (the optimizer state
    /// exists by then), and every `--log-memory-interval`; GPU memory only.
    private func reportMemory(after iteration: Int) {
        let due = reportsMemory || arguments.logMemoryInterval.map { iteration % $0 == 0 } ?? false
        if iteration > startIteration + 1 { reportsMemory = false }
        guard due, let memory = MemoryReport.current(on: device, deviceUsed: arguments.logDeviceMemoryUsed) else { return }
        rankLog(memory.line(rank: rank, iterations: iteration))
    }
}

/// One finished iteration, as the loop hands it to `TrainingReporter`.
struct IterationReport {
    var iteration: Int
    var trainIters: Int
    var consumedSamples: Int
    var globalBatchSize: Int
    var step: TrainingStepResult
    var learningRate: Float
    var lossScale: Float
    var seconds: Double
    /// The iteration's model floating-point operations, all ranks together.
    var flops: Double
    var paramsNorm: Double?
    var numZeros: Int?
}

/// Sums over the iterations between two log lines, reset after each line as Megatron's `total_loss_dict`.
struct IntervalStats {
    var iterations = 0
    var advanced = 0
    var lossTotal = 0.0
    var seconds = 0.0
    var skipped = 0
    var nan = 0
    /// The MoE loss items summed over every iteration (Megatron adds them even for skipped ones).
    var moeLossTotals: [String: Double] = [:]

    /// Loss averaged over the iterations that updated the model.
    var meanLoss: Double { lossTotal / Double(max(advanced, 1)) }

    mutating func add(_ step: TrainingStepResult, seconds: Double) {
        iterations += 1
        self.seconds += seconds
        for (name, value) in step.moeLosses { moeLossTotals[name, default: 0] += value }
        if !step.loss.isFinite { nan += 1 }
        if step.updated {
            advanced += 1
            lossTotal += step.loss
        } else {
            skipped += 1
        }
    }

    /// The line for the interval ending at `report`'s iteration: the last iteration's grad norm (none when it
    /// was skipped) and statistics, the interval's means.
    func entry(_ report: IterationReport, throughput: Double?, moeLossNames: [String] = []) -> TrainingLogEntry {
        var entry = TrainingLogEntry(
            iteration: report.iteration, trainIters: report.trainIters, consumedSamples: report.consumedSamples,
            elapsedMillisecondsPerIteration: seconds / Double(max(iterations, 1)) * 1000, throughput: throughput,
            learningRate: report.learningRate, globalBatchSize: report.globalBatchSize, lmLoss: meanLoss,
            lossScale: report.lossScale, gradNorm: report.step.updated ? report.step.gradNorm : nil,
            numZeros: report.numZeros, paramsNorm: report.paramsNorm, skippedIterations: skipped, nanIterations: nan)
        entry.moeLosses = moeLossNames.map { ($0, (moeLossTotals[$0] ?? 0) / Double(max(advanced, 1))) }
        return entry
    }
}
