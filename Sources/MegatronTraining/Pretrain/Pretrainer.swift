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
    /// Builds a model of the run's shape for `group` (the sample after training decodes with a KV cache,
    /// which sequence parallelism does not take).
    private let makeModel: (TensorParallelGroup) throws -> GPTModel
    /// Where the model and its batches live (`--device`, else a GPU when one is found).
    public let device: Device
    let optimizer: TrainingOptimizer
    /// The run's parallel groups (every one a single rank on one rank).
    public let parallel: ParallelState
    /// The iteration driver: micro-batches, loss totals, gradient finalization, optimizer step.
    let step: TrainingStep
    /// The 1F1B schedule of this rank's pipeline stage; nil without pipeline parallelism.
    let pipelineSchedule: PipelineStageSchedule?
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
    /// When this trainer was made: `--exit-duration-in-mins` counts from here, start-up included, as Megatron.
    let createdAt = Date()
    /// Iterations completed so far, including those of a loaded checkpoint.
    public internal(set) var iteration = 0
    public internal(set) var consumedSamples = 0
    /// World rank 0's hold on `--save` (nil elsewhere, or without --save).
    let saveLock: SaveDirectoryLock?
    /// The iteration the `--save` directory last received (saved, or loaded from it), so none is saved twice.
    var lastSavedIteration: Int?
    /// The background writer of `--async-save` (nil: saves are synchronous).
    let asyncSaves: AsyncCheckpointWriter?

    /// What a finished run reports.
    public struct Summary {
        public var iterations: Int
        /// Training loss averaged over each logging interval, in order.
        public var intervalLosses: [Double]
        public var validationLoss: Double?
        public var testLoss: Double?
    }

    /// With `parallel`, this is one rank of a parallel run: only world rank 0 logs and writes files.
    public init(arguments: PretrainArguments, parallel: ParallelState? = nil, log: @escaping (String) -> Void) throws {
        let parallel = parallel ?? .singleRank()
        guard parallel.pipeline.size == arguments.pipelineModelParallelSize else {
            throw ArgumentError("--pipeline-model-parallel-size \(arguments.pipelineModelParallelSize) but the parallel state has "
                + "\(parallel.pipeline.size) pipeline stages: start the ranks with megatron launch")
        }
        try arguments.validate(dataParallelSize: parallel.data.size)
        self.arguments = arguments
        self.parallel = parallel
        let logging = parallel.world.rank == 0
        self.log = logging ? log : { _ in }
        let world = ArgumentsDump.World(rank: parallel.world.rank, size: parallel.world.size,
                                        dataParallelSize: parallel.data.size)
        for line in ArgumentsDump(arguments, world: world).lines() { self.log(line) }
        // An unusable --save or --load stops here, before the model and the data are built.
        saveLock = logging ? try Self.lockSaveDirectory(arguments.save) : nil
        asyncSaves = arguments.asyncSave ? AsyncCheckpointWriter() : nil
        try Self.requireCheckpointDirectory(arguments.load)
        let setupStarted = Date()
        let config = try arguments.transformerConfig()
        let tokenizerAndOptions = try runTokenizer(arguments)
        tokenizer = tokenizerAndOptions?.0
        // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x TP.
        let tensorParallel = TensorParallelGroup(parallel, sequenceParallel: arguments.effectiveSequenceParallel)
        let realVocab = tokenizer?.vocabSize ?? ByteTokens.vocabularySize
        let vocab = try Self.modelVocabulary(realVocab, arguments: arguments, tensorParallelSize: tensorParallel.size)
        // Thread ranks exchange host memory: they train on the CPU.
        if parallel.world is ThreadCommunicator {
            guard arguments.device != .cuda else {
                throw ArgumentError("--device cuda: ranks run as threads (megatron launch --threads) train on the CPU; "
                    + "launch one process per GPU instead")
            }
            device = .cpu
        } else {
            device = try arguments.resolvedDevice()
        }
        try TrainingMemoryFloor.check(arguments, config: config, vocabSize: vocab, device: device, parallel: parallel)
        if let note = try fusedAttentionNote(config, on: device) { self.log(note) }
        try checkGatedDeltaNetKernels(config, on: device)
        reporter = try TrainingReporter(arguments: arguments, log: self.log,
                                        rankLog: parallel.dataRank == 0 ? log : { _ in },
                                        parallel: parallel, device: device)
        if arguments.paddedVocabSize == nil { self.log(MegatronLogLines.paddedVocabulary(size: realVocab, padded: vocab)) }
        self.log("building GPT model ...")
        // Every tensor-parallel rank draws the whole weights from the seed and keeps its slice, so any TP size
        // starts from the single-rank model.
        let placement = device
        let stage = GPTModelStage(placement: try arguments.pipelinePlacement(), rank: parallel.pipelineRank)
        let experts = arguments.expertParallelGroup(parallel)
        makeModel = { group in
            try onDevice(placement) {
                let model = try GPTModel(config: config, vocabSize: vocab, maxSequenceLength: arguments.resolvedMaxPositionEmbeddings,
                                         untieEmbeddingsAndOutputWeights: arguments.untieEmbeddingsAndOutputWeights,
                                         seed: UInt64(arguments.seed), tensorParallel: group, stage: stage)
                if let experts { try model.distributeExperts(over: experts) }
                model.setMoEGroupedGemm(arguments.moeGroupedGemm)
                return model
            }
        }
        let model = try makeModel(tensorParallel)
        self.model = model
        try Self.enableFP8(arguments, on: model, device: device, parallel: parallel, log: self.log)
        reporter.rankLog(MegatronLogLines.parameterCount(tensorRank: tensorParallel.rank, pipelineRank: parallel.pipelineRank,
                                                          count: model.namedParameters().map { $0.1.count }.reduce(0, +)))
        self.log("> device: \(device)")
        try applyRecompute(arguments, to: model.decoder, chunkLayers: stage.chunks.map(\.count).max() ?? 0)
        optimizer = try TrainingOptimizer(arguments, model: model, parallel: parallel)
        step = TrainingStep(model: model, optimizer: optimizer, parallel: parallel, clipGrad: arguments.clipGrad,
                            perTokenLoss: arguments.calculatePerTokenLoss, timers: reporter.timers)
        pipelineSchedule = parallel.pipeline.size > 1
            ? try PipelineStageSchedule(pipeline: parallel.pipeline,
                                        activationShape: model.stageActivationShape(batch: arguments.microBatchSize,
                                                                                    seq: arguments.seqLength),
                                        dtype: config.paramsDType, device: device, chunks: stage.chunks.count,
                                        microBatchGroupSize: arguments.microbatchGroupSizePerVirtualPipelineStage,
                                        overlapCommunication: arguments.overlapP2PCommunication,
                                        overlapWarmupFlush: arguments.overlapP2PCommunicationWarmupFlush)
            : nil
        if let pipelineSchedule { step.schedule = pipelineSchedule }
        schedule = try TrainingSchedule(arguments, groups: optimizer.groups, dataParallelSize: parallel.data.size)
        gradScaler = try makeGradScaler(arguments)
        let modelSetup = Date().timeIntervalSince(setupStarted)
        let dataStarted = Date()
        if let (tokenizer, options) = tokenizerAndOptions {
            (trainData, validData, testData) = try megatronDatasetSplits(arguments, tokenizer: tokenizer, options: options,
                                                                         trainIters: schedule.trainIters,
                                                                         globalBatchSize: schedule.globalBatchSize,
                                                                         vocabularySize: vocab, log: logging ? log : { _ in })
        } else {
            (trainData, validData) = EmbeddedCorpus(seed: arguments.seed).splits(sequenceLength: arguments.seqLength,
                                                                                  seed: arguments.seed)
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

    /// The model's vocabulary: `--padded-vocab-size` as given (Megatron then pads nothing), else the tokenizer's
    /// padded to a multiple of make_vocab_size_divisible_by x TP.
    static func modelVocabulary(_ tokens: Int, arguments: PretrainArguments, tensorParallelSize: Int) throws -> Int {
        guard let given = arguments.paddedVocabSize else {
            return paddedVocabSize(tokens, divisibleBy: arguments.makeVocabSizeDivisibleBy * tensorParallelSize)
        }
        guard given >= tokens, given % tensorParallelSize == 0 else {
            throw ArgumentError("--padded-vocab-size \(given) must hold the tokenizer's \(tokens) tokens and be a multiple "
                + "of the tensor-parallel size (\(tensorParallelSize))")
        }
        return given
    }

    /// Trains for the configured iterations and returns the logged losses. With `--async-save` it returns once the
    /// last checkpoint is written, throwing the background write's error if it failed.
    public func run() throws -> Summary {
        let summary: Summary
        do { summary = try train() } catch {
            try? asyncSaves?.wait()
            throw error
        }
        try asyncSaves?.wait()
        return summary
    }

    func train() throws -> Summary {
        log(arguments.skipTrain ? "skipping training (--skip-train is on) ..." : "training ...")
        try reporter.trainingStarts(at: iteration)
        log(MegatronLogLines.datetime("before the start of training step"))
        defer { reporter.flush() }
        var summary = Summary(iterations: iteration, intervalLosses: [])
        let stop = StopRequest(listening: arguments.exitSignalHandler, signal: arguments.exitSignal.number)
        var batchSize = schedule.batchSize(consumedSamples: consumedSamples)
        while !arguments.skipTrain && iteration < schedule.trainIters {
            // As Megatron: a checkpoint before the first iteration of each larger batch of a ramp-up or step schedule.
            let previousBatchSize = batchSize
            batchSize = schedule.batchSize(consumedSamples: consumedSamples)
            try schedule.check(batchSize, after: iteration > 0 ? previousBatchSize : nil, consumedSamples: consumedSamples)
            if batchSize != previousBatchSize, iteration > 0, arguments.save != nil { try saveCheckpointAndTime() }
            let stepStarted = Date()
            let lr = schedule.loggedLearningRate
            let step = try trainStep(consumedSamples: consumedSamples, batchSize: batchSize)
            consumedSamples += batchSize
            iteration += 1
            let seconds = Date().timeIntervalSince(stepStarted)
            onIteration?(iteration, schedule.trainIters, step.loss, seconds * 1000)
            if let loss = try reporter.iterationFinished(iterationReport(step, lr: lr, seconds: seconds, batchSize: batchSize)) {
                summary.intervalLosses.append(loss)
            }
            if let every = arguments.evalInterval, iteration % every == 0 {
                try optimizer.finishParameterUpdates()
                summary.validationLoss = try evaluate(validData, name: "validation", prefix: "iteration \(iteration)")
            }
            summary.iterations = iteration
            if let every = arguments.saveInterval, arguments.save != nil, iteration % every == 0 { try saveCheckpointAndTime() }
            if let reason = try exitReason(stop: stop) {
                log("> exiting: \(reason)")
                if lastSavedIteration != iteration { try saveCheckpointAndTime() }
                try optimizer.finishParameterUpdates()
                return summary
            }
        }
        // Parameter all-gathers of the last step (--overlap-param-gather) land before anyone reads the weights.
        try optimizer.finishParameterUpdates()
        if !arguments.skipTrain {
            log(MegatronLogLines.datetime("after training is done"))
            // As Megatron: the last iteration is saved too (without the save timer's report), before the final
            // evaluation.
            if iteration != 0, lastSavedIteration != iteration { try saveCheckpoint() }
        }
        // As Megatron: after training, the validation and test sets once more, named in the line.
        summary.validationLoss = try evaluate(validData, name: "validation", prefix: "iteration \(iteration) on validation set")
        summary.testLoss = try evaluate(testData, name: "test", prefix: "iteration \(iteration) on test set")
        return summary
    }

    /// Why training should stop early (exit interval, time budget, a termination signal), if it should. The
    /// time and signal checks are agreed over the world, as Megatron's all-reduce of them: every rank then
    /// stops after the same iteration, none left waiting in a collective.
    func exitReason(stop: StopRequest) throws -> String? {
        if let exit = arguments.exitInterval, iteration % exit == 0 { return "reached --exit-interval \(exit) at iteration \(iteration)" }
        guard arguments.exitDurationInMins != nil || arguments.exitSignalHandler else { return nil }
        let minutes = arguments.exitDurationInMins ?? .infinity
        var flags: [Float] = [Date().timeIntervalSince(createdAt) > Double(minutes) * 60 ? 1 : 0, stop.requested ? 1 : 0]
        if parallel.world.size > 1 {
            let agreed = Tensor(shape: [2], values: flags).to(device)
            try parallel.world.allReduce(agreed, op: .max).wait()
            flags = agreed.floats()
        }
        if flags[0] > 0 { return "reached --exit-duration-in-mins \(minutes)" }
        if flags[1] > 0 { return "received \(arguments.exitSignal.rawValue)" }
        return nil
    }

    /// One iteration of `batchSize` samples: forward and backward over every micro-batch, then the optimizer
    /// step (skipped on inf/NaN gradients, which also backs off the fp16 loss scale); the scheduler advances
    /// on success.
    ///
    /// With data parallelism, each rank takes its `1 / dp` of every slice of `micro-batch x dp` samples
    /// (Megatron's sampler), gradients are averaged over the ranks, and the logged loss is token-weighted
    /// over all of them.
    func trainStep(consumedSamples: Int, batchSize: Int) throws -> TrainingStepResult {
        let (dp, dpRank, microBatchSize) = (parallel.data.size, parallel.dataRank, arguments.microBatchSize)
        let (data, device) = (trainData, device)
        return try step.run(microBatches: batchSize / (microBatchSize * dp), samples: batchSize,
                            scheduler: &schedule.scheduler, gradScaler: &gradScaler) { m in
            try data.batch(startingAt: consumedSamples + (m * dp + dpRank) * microBatchSize, size: microBatchSize).to(device)
        }
    }

    /// Token-weighted loss over `eval-iters` validation batches; prints Megatron's validation line. None with
    /// `--eval-iters 0`, as in Megatron.
    func evaluate(_ data: TrainingData?, name: String, prefix: String) throws -> Double? {
        guard let data, arguments.evalIters > 0 else { return nil }
        model.eval()
        defer { model.train() }
        let batches = max(1, min(arguments.evalIters, data.count / arguments.microBatchSize))
        var total = 0.0, tokens = 0
        for b in 0..<batches {
            let batch = try data.batch(startingAt: b * arguments.microBatchSize, size: arguments.microBatchSize).to(device)
            if let pipelineSchedule {
                let loss = try pipelineSchedule.forwardOnly { [model] in model.stageForward(batch, input: $1, chunk: $0) }
                total += loss.lossSum
                tokens += loss.tokens
                continue
            }
            let loss = withoutGrad { model.maskedLoss(batch) }
            total += Double(loss.sum.item())
            tokens += loss.tokens
        }
        let loss = total / Double(max(tokens, 1))
        reporter.evaluationFinished(loss: loss, name: name, prefix: prefix, iteration: iteration, consumedSamples: consumedSamples)
        return loss
    }

    /// Text the trained model writes after `prompt` (the embedded corpus is byte-tokenized).
    public func sample(prompt: String, maxNewTokens: Int = 200) throws -> String {
        guard model.stage.isWhole else {
            throw ArgumentError("sampling needs the whole model; this rank holds pipeline stage \(parallel.pipelineRank)")
        }
        var decoder = model
        if model.tensorParallel.sequenceParallel {
            decoder = try makeModel(TensorParallelGroup(parallel))
            try decoder.loadStateDict(model.stateDict())
        }
        let ids = decoder.generate(prompt: ByteTokens.encode(prompt), vocabSize: ByteTokens.vocabularySize, maxNewTokens: maxNewTokens,
                                 stopToken: ByteTokens.endOfDocument,
                                 options: SamplingOptions(temperature: 0.7, topK: 10, seed: UInt64(arguments.seed)))
        return prompt + ByteTokens.decode(ids.tokens)
    }
}

/// The run's timers time the step driver's phases.
extension TrainingTimers: StepTimers {}

/// Marks the layers `--recompute-granularity full --recompute-method ... --recompute-num-layers N` recomputes,
/// or the submodules of every layer `--recompute-granularity selective` (`--recompute-modules`) recomputes.
/// Layers count within each model chunk (`chunkLayers` layers each; the whole decoder without interleaving),
/// as Megatron's per-chunk blocks count them.
func applyRecompute(_ arguments: PretrainArguments, to block: TransformerBlock, chunkLayers: Int) throws {
    if arguments.resolvedRecomputeGranularity == .selective {
        block.recomputedModules = try arguments.selectiveRecomputeModules()
        return
    }
    guard arguments.resolvedRecomputeGranularity == .full, let n = arguments.recomputeNumLayers else { return }
    let layers = chunkLayers
    switch arguments.recomputeMethod {
    case .uniform:
        // Megatron's uniform method checkpoints every chunk of n layers; at layer granularity, all of them.
        block.recomputedLayers = Set(0..<layers)
    default:
        block.recomputedLayers = Set(0..<min(n, layers))
    }
}

/// Checks at start-up that attention runs fused on a GPU: a head dim no fused implementation takes is
/// refused with the reason (rather than materializing [s, s] scores, or worse); fp32, which fused
/// attention does not take, trains with materialized scores and gets a line saying so.
func fusedAttentionNote(_ config: TransformerConfig, on device: Device) throws -> String? {
    guard device != .cpu else { return nil }
    let d = config.kvChannels
    if let problem = Ops.fusedAttentionProblem(headDim: d, dtype: .bfloat16) {
        throw ArgumentError("head dim \(d) (--kv-channels, or --hidden-size / --num-attention-heads): \(problem); "
            + "choose such a head dim, or train on the CPU (--device cpu)")
    }
    guard let problem = Ops.fusedAttentionProblem(headDim: d, dtype: config.paramsDType) else { return nil }
    return "> attention: \(problem): each layer materializes its [s, s] scores (--bf16 or --fp16 runs it fused)"
}
