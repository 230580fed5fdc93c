import Foundation
import MegatronAutograd
import MegatronCore
import MegatronData
import MegatronParallel
import MegatronTensor

/// Megatron's GPT pretraining loop: micro-batches with gradient accumulation, token-weighted loss,
/// clipping, the learning-rate schedule, periodic evaluation, and Megatron's log line.
///
/// ```swift
/// let trainer = try Pretrainer(arguments: .embeddedDefault, log: { print($0) })
/// let summary = trainer.run()
/// ```
public final class Pretrainer {
    public let arguments: PretrainArguments
    public let model: GPTModel
    /// Where the model and its batches live (`--device`, else a GPU when one is found).
    public let device: Device
    let optimizer: TrainingOptimizer
    /// The run's parallel groups; nil on one rank.
    public let groups: TrainingGroups?
    var schedule: TrainingSchedule
    var gradScaler: (any GradScaler)?
    let trainData: TrainingData
    let validData: TrainingData?
    let testData: TrainingData?
    /// The tokenizer of a run on Megatron datasets; nil on the embedded corpus (byte tokens).
    let tokenizer: (any Tokenizer)?
    let log: (String) -> Void
    /// The log line, TensorBoard, timers and progress of the run.
    let reporter: TrainingReporter
    /// Called after every iteration with (iteration, total, loss, milliseconds): a live progress display.
    public var onIteration: ((Int, Int, Double, Double) -> Void)?
    /// Iterations completed so far, including those of a loaded checkpoint.
    public internal(set) var iteration = 0
    public internal(set) var consumedSamples = 0

    /// What a finished run reports.
    public struct Summary {
        public var iterations: Int
        /// Training loss averaged over each logging interval, in order.
        public var intervalLosses: [Double]
        public var validationLoss: Double?
        public var testLoss: Double?
    }

    /// With `groups`, this is one rank of a parallel run: only world rank 0 logs and writes files.
    public init(arguments: PretrainArguments, groups: TrainingGroups? = nil, log: @escaping (String) -> Void) throws {
        try arguments.validate(dataParallelSize: groups?.dataParallelSize ?? 1)
        self.arguments = arguments
        self.groups = groups
        let logging = (groups?.world.rank ?? 0) == 0
        self.log = logging ? log : { _ in }
        let world = ArgumentsDump.World(rank: groups?.world.rank ?? 0, size: groups?.world.size ?? 1,
                                        dataParallelSize: groups?.dataParallelSize ?? 1)
        for line in ArgumentsDump(arguments, world: world).lines() { self.log(line) }
        let setupStarted = Date()
        let config = try arguments.transformerConfig()
        let tokenizerAndOptions = try runTokenizer(arguments)
        tokenizer = tokenizerAndOptions?.0
        // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x TP.
        let tensorParallel = TensorParallelGroup(groups?.tensor, sequenceParallel: groups?.sequenceParallel ?? false)
        let realVocab = tokenizer?.vocabSize ?? ByteTokens.vocabularySize
        let vocab = paddedVocabSize(realVocab, divisibleBy: arguments.makeVocabSizeDivisibleBy * tensorParallel.size)
        // Thread ranks exchange host memory: they train on the CPU.
        if groups?.world is ThreadCommunicator {
            guard arguments.device != "cuda" else {
                throw ArgumentError("--device cuda: ranks run as threads (megatron launch --threads) train on the CPU; "
                    + "launch one process per GPU instead")
            }
            device = .cpu
        } else {
            device = try arguments.resolvedDevice()
        }
        reporter = try TrainingReporter(arguments: arguments, log: self.log,
                                        rankLog: (groups?.dataParallelRank ?? 0) == 0 ? log : { _ in },
                                        groups: groups, device: device)
        self.log(MegatronLogLines.paddedVocabulary(size: realVocab, padded: vocab))
        self.log("building GPT model ...")
        // Every tensor-parallel rank draws the whole weights from the seed and keeps its slice, so any TP size
        // starts from the single-rank model.
        let model = try onDevice(device) {
            try GPTModel(config: config, vocabSize: vocab, maxSequenceLength: arguments.resolvedMaxPositionEmbeddings,
                         untieEmbeddingsAndOutputWeights: arguments.untieEmbeddingsAndOutputWeights,
                         seed: UInt64(arguments.seed), tensorParallel: tensorParallel)
        }
        self.model = model
        reporter.rankLog(MegatronLogLines.parameterCount(tensorRank: tensorParallel.rank,
                                                          count: model.namedParameters().map { $0.1.count }.reduce(0, +)))
        self.log("> device: \(device)")
        applyRecompute(arguments, to: model.decoder)
        // Duplicated parameters count once in the grad norm; partial gradients (sequence-parallel norms) are
        // summed over the tensor-parallel ranks before the step.
        let gradStats = GradientStatsGroups(groups: groups?.tensor.map { [$0] } ?? [], tensorParallelRank: tensorParallel.rank,
                                            duplicatedParameters: model.tensorParallelDuplicatedParameters())
        optimizer = try TrainingOptimizer(arguments, model: model, groups: groups, gradStats: gradStats) {
            TensorParallelGradients.allReducePartial(model, group: tensorParallel)
        }
        schedule = try TrainingSchedule(arguments, groups: optimizer.groups)
        gradScaler = try makeGradScaler(arguments)
        let modelSetup = Date().timeIntervalSince(setupStarted)
        let dataStarted = Date()
        if let (tokenizer, options) = tokenizerAndOptions {
            (trainData, validData, testData) = try megatronDatasetSplits(arguments, tokenizer: tokenizer, options: options,
                                                                         trainIters: schedule.trainIters,
                                                                         globalBatchSize: schedule.globalBatchSize)
        } else {
            (trainData, validData) = embeddedCorpusSplits(arguments)
            testData = nil
        }
        reporter.timers.add("train/valid/test-data-iterators-setup", seconds: Date().timeIntervalSince(dataStarted))
        // Megatron loads the checkpoint with the model, before the data; here the data comes first (loading
        // needs the whole trainer), and the lines follow Megatron's order.
        let loadStarted = Date()
        if let load = arguments.load {
            try restore(from: CheckpointDirectory(root: URL(fileURLWithPath: load)))
            reporter.timers.add("load-checkpoint", seconds: Date().timeIntervalSince(loadStarted))
            try reporter.timerReport(["load-checkpoint"])
        }
        reporter.timers.add("model-and-optimizer-setup", seconds: modelSetup + Date().timeIntervalSince(loadStarted))
        self.log(MegatronLogLines.datetime("after model, optimizer, and learning rate scheduler are built"))
        self.log(MegatronLogLines.datetime("after dataloaders are built"))
        self.log("done with setup ...")
        try reporter.timerReport(["model-and-optimizer-setup", "train/valid/test-data-iterators-setup"])
    }

    /// Trains for the configured iterations and returns the logged losses.
    public func run() throws -> Summary {
        log("training ...")
        try reporter.trainingStarts(at: iteration)
        log(MegatronLogLines.datetime("before the start of training step"))
        defer { reporter.flush() }
        var summary = Summary(iterations: iteration, intervalLosses: [])
        let started = Date()
        let stop = StopRequest(listening: arguments.exitSignalHandler)
        while iteration < schedule.trainIters {
            let stepStarted = Date()
            let lr = schedule.loggedLearningRate
            let step = try trainStep(consumedSamples: consumedSamples)
            consumedSamples += schedule.globalBatchSize
            iteration += 1
            let seconds = Date().timeIntervalSince(stepStarted)
            onIteration?(iteration, schedule.trainIters, step.loss, seconds * 1000)
            if let loss = try reporter.iterationFinished(iterationReport(step, lr: lr, seconds: seconds)) {
                summary.intervalLosses.append(loss)
            }
            if let every = arguments.evalInterval, iteration % every == 0 {
                try optimizer.finishParameterUpdates()
                summary.validationLoss = evaluate(validData, name: "validation", prefix: "iteration \(iteration)")
            }
            summary.iterations = iteration
            if let reason = exitReason(started: started, stop: stop) {
                log("> exiting: \(reason)")
                if arguments.save != nil { try saveCheckpointAndTime() }
                try optimizer.finishParameterUpdates()
                return summary
            }
            if let every = arguments.saveInterval, arguments.save != nil, iteration % every == 0 { try saveCheckpointAndTime() }
        }
        // Parameter all-gathers of the last step (--overlap-param-gather) land before anyone reads the weights.
        try optimizer.finishParameterUpdates()
        log(MegatronLogLines.datetime("after training is done"))
        // As Megatron: after training, the validation and test sets once more, named in the line.
        summary.validationLoss = evaluate(validData, name: "validation", prefix: "iteration \(iteration) on validation set")
        summary.testLoss = evaluate(testData, name: "test", prefix: "iteration \(iteration) on test set")
        return summary
    }

    /// Why training should stop early (exit interval, time budget, a termination signal), if it should.
    func exitReason(started: Date, stop: StopRequest) -> String? {
        if let exit = arguments.exitInterval, iteration % exit == 0 { return "reached --exit-interval \(exit) at iteration \(iteration)" }
        if let minutes = arguments.exitDurationInMins, Date().timeIntervalSince(started) > Double(minutes) * 60 {
            return "reached --exit-duration-in-mins \(minutes)"
        }
        if stop.requested { return "received SIGTERM" }
        return nil
    }

    /// One iteration: forward and backward over every micro-batch, then the optimizer step (skipped on
    /// inf/NaN gradients, which also backs off the fp16 loss scale); the scheduler advances on success.
    ///
    /// With data parallelism, each rank takes its `1 / dp` of every slice of `micro-batch x dp` samples
    /// (Megatron's sampler), gradients are averaged over the ranks, and the logged loss is token-weighted
    /// over all of them.
    func trainStep(consumedSamples: Int) throws -> StepOutcome {
        model.train()
        try optimizer.zeroGrad()
        let (dp, dpRank) = (groups?.dataParallelSize ?? 1, groups?.dataParallelRank ?? 0)
        let microBatches = arguments.microBatchesPerIteration(dataParallelSize: dp)
        let lossScale = gradScaler?.scale ?? 1
        var lossSum: Tensor?, tokens = 0, totals: TrainingOptimizer.LossTotals?
        let timers = reporter.timers
        let forwardBackward = try timers.start("forward-backward", level: 1)
        for m in 0..<microBatches {
            let start = consumedSamples + (m * dp + dpRank) * arguments.microBatchSize
            let batch = try timers.time("batch-generator", level: 2) {
                trainData.batch(startingAt: start, size: arguments.microBatchSize).to(device)
            }
            try optimizer.microBatch(m, of: microBatches) {
                let (lossTotal, count) = try timers.time("forward-compute", level: 2) { maskedLoss(batch) }
                lossSum = lossSum.map { $0 + lossTotal.detached() } ?? lossTotal.detached()
                tokens += count
                // Summed over the ranks during the last backward, copied after it and read after the optimizer
                // step: the read then waits for nothing else, and the GPU runs the step while the host prepares
                // the next one.
                if m == microBatches - 1 { totals = try optimizer.startLossTotals(lossSum!, tokens: tokens) }
                // Megatron: each micro-batch's loss averaged over its unmasked tokens, divided by the micro-batches.
                try timers.time("backward-compute", level: 2) {
                    (lossTotal * (lossScale / Float(max(count, 1) * microBatches))).backward()
                }
            }
        }
        try timers.stop(forwardBackward)
        let onHost = try totals!.startCopyToHost()
        let report = try timers.time("optimizer", level: 1) {
            try optimizer.step(scheduler: schedule.scheduler, clipGrad: arguments.clipGrad, lossScale: lossScale)
        }
        gradScaler?.update(foundInf: !report.updated)
        if report.updated { schedule.scheduler.step(schedule.globalBatchSize) }
        let summed = onHost.tensor().floats()
        return StepOutcome(loss: Double(summed[0]) / Double(summed[1]), gradNorm: report.gradNorm, updated: report.updated)
    }

    /// Sum of the per-token losses under the loss mask, and the number of tokens it keeps.
    func maskedLoss(_ batch: TrainingBatch) -> (Tensor, Int) {
        let losses = model.loss(tokens: batch.tokens, labels: batch.labels)
        guard let mask = batch.lossMask else { return (losses.sum(), losses.count) }
        return ((losses * mask).sum(), batch.maskedTokens)
    }

    /// Token-weighted loss over `eval-iters` validation batches; prints Megatron's validation line.
    func evaluate(_ data: TrainingData?, name: String, prefix: String) -> Double? {
        guard let data else { return nil }
        model.eval()
        defer { model.train() }
        let batches = max(1, min(arguments.evalIters, data.count / arguments.microBatchSize))
        var total = 0.0, tokens = 0
        for b in 0..<batches {
            let batch = data.batch(startingAt: b * arguments.microBatchSize, size: arguments.microBatchSize).to(device)
            let (sum, count) = withoutGrad { maskedLoss(batch) }
            total += Double(sum.item())
            tokens += count
        }
        let loss = total / Double(max(tokens, 1))
        reporter.evaluationFinished(loss: loss, name: name, prefix: prefix, iteration: iteration, consumedSamples: consumedSamples)
        return loss
    }

    /// Text the trained model writes after `prompt` (the embedded corpus is byte-tokenized).
    public func sample(prompt: String, maxNewTokens: Int = 200) -> String {
        let ids = model.generate(prompt: ByteTokens.encode(prompt), maxNewTokens: maxNewTokens,
                                 stopToken: ByteTokens.endOfDocument,
                                 options: SamplingOptions(temperature: 0.7, topK: 10, seed: UInt64(arguments.seed)))
        return prompt + ByteTokens.decode(ids.tokens)
    }
}

/// Result of one training iteration.
struct StepOutcome {
    var loss: Double
    var gradNorm: Float
    var updated: Bool
}

/// Train and validation samples of the built-in corpus (97% / 3% of its documents).
func embeddedCorpusSplits(_ arguments: PretrainArguments) -> (TokenWindows, TokenWindows) {
    let documents = SyntheticCorpus.documents(count: 4000, seed: UInt64(arguments.seed))
    let cut = documents.count * 97 / 100
    func stream(_ docs: ArraySlice<String>) -> [Int] {
        docs.flatMap { ByteTokens.encode($0) + [ByteTokens.endOfDocument] }
    }
    return (TokenWindows(tokens: stream(documents[..<cut]), sequenceLength: arguments.seqLength, seed: UInt64(arguments.seed)),
            TokenWindows(tokens: stream(documents[cut...]), sequenceLength: arguments.seqLength, seed: UInt64(arguments.seed) + 1))
}

/// Marks the layers `--recompute-granularity full --recompute-method ... --recompute-num-layers N` recomputes.
func applyRecompute(_ arguments: PretrainArguments, to block: TransformerBlock) {
    guard arguments.recomputeGranularity == "full", let n = arguments.recomputeNumLayers else { return }
    let layers = block.layers.count
    switch arguments.recomputeMethod {
    case "uniform":
        // Megatron's uniform method checkpoints every chunk of n layers; at layer granularity, all of them.
        block.recomputedLayers = Set(0..<layers)
    default:
        block.recomputedLayers = Set(0..<min(n, layers))
    }
}
