import Foundation
import MegatronCore
import MegatronParallel
import MegatronTensor

extension Pretrainer {
    /// Saves model, optimizer, RNG and progress as `<save>/iter_XXXXXXX/` and updates the tracker.
    ///
    /// As Megatron-LM's `torch_dist` (`--ckpt-format`, the default) every rank writes only what it owns, in
    /// parallel: its tensor-parallel slice of each weight, its distributed-optimizer shard (a replicated tensor is
    /// written by one rank of its group), and any layout loads it. The safetensors layout gathers the whole
    /// state and world rank 0 writes it.
    func saveCheckpoint() throws {
        guard let save = arguments.save else { return }
        try optimizer.finishParameterUpdates()
        settleFP8Scaling()
        lastSavedIteration = iteration
        let store = CheckpointDirectory(root: URL(fileURLWithPath: save))
        let previous = parallel.world.rank == 0 && arguments.saveRetainInterval != nil ? try store.latest() : nil
        if parallel.world.rank == 0 {
            log(MegatronLogLines.savingCheckpoint(iteration: iteration, directory: save, format: arguments.ckptFormat.rawValue))
        }
        switch arguments.ckptFormat {
        case .safetensors:
            var (modelState, optimizerState) = try ParallelCheckpoint.gather(model: model, optimizerState: try optimizer.stateTensors())
            if let moe = model.config.moe {
                modelState = try ParallelCheckpoint.gatherExperts(modelState, group: parallel.expert, numExperts: moe.numExperts)
                optimizerState = try ParallelCheckpoint.gatherExperts(optimizerState, group: parallel.expert, numExperts: moe.numExperts)
            }
            guard parallel.world.rank == 0 else { return }
            var tensors: [String: Tensor] = [:]
            for (name, p) in modelState { tensors["model." + name] = p }
            for (name, b) in model.checkpointBuffers() { tensors["model." + name] = b }
            for (name, t) in optimizerState { tensors["optimizer." + name] = t }
            try store.save(iteration: iteration, tensors: tensors.mapValues { $0.to(.cpu) }, manifest: try manifest(shapes: tensors))
        case .torchDist:
            // The previous asynchronous save completes (or its error surfaces) before this one starts.
            try asyncSaves?.wait()
            let chunks = try ParallelCheckpoint.chunks(model: model, optimizer: optimizer, parallel: parallel, stateNames: optimizerStateNames,
                                                       copied: asyncSaves != nil)
            let job = try MegatronCheckpointFormat.prepareSharded(to: store, iteration: iteration, chunks: chunks,
                                                                  objects: ParallelCheckpoint.stageRNGObjects(model: model, parallel: parallel),
                                                                  world: parallel.world, device: device,
                                                                  manifest: try manifest(shapes: [:], savedLayout: "sharded"),
                                                                  megatronArgs: megatronArgs + (megatronOptimizer?.args ?? []),
                                                                  megatronCommon: megatronOptimizer?.common ?? [])
            let finish = { [self, iteration] in
                try job.run()
                if parallel.world.rank == 0 { try afterSave(iteration: iteration, save: save, previous: previous) }
            }
            if let asyncSaves { asyncSaves.submit(job.name, finish) } else { try MegatronCheckpointFormat.agree(parallel.world, device, finish) }
            return
        }
        try afterSave(iteration: iteration, save: save, previous: previous)
    }

    /// Rank 0's steps once checkpoint `iteration` is complete (on the background writer with `--async-save`):
    /// pruning, the log line, `--save-retain-interval`.
    func afterSave(iteration: Int, save: String, previous: CheckpointName?) throws {
        let store = CheckpointDirectory(root: URL(fileURLWithPath: save))
        if let keep = arguments.keepLastCheckpoints { try store.prune(keep: keep, newest: iteration) }
        log(MegatronLogLines.savedCheckpoint(iteration: iteration, directory: save,
                                             tensor: (parallel.tensorRank, parallel.tensor.size),
                                             pipeline: (parallel.pipelineRank, parallel.pipeline.size)))
        if let retain = arguments.saveRetainInterval, let previous, !previous.isRelease {
            try deleteUnretained(previous.iteration, every: retain, from: store, current: iteration)
        }
    }

    /// What Megatron-LM's loader needs to resume this run's Adam state from the checkpoint (its param groups, the
    /// scheduler, the layout's name); nil for SGD, whose state Megatron keeps otherwise (Megatron then starts its own).
    var megatronOptimizer: (common: [(String, PickleValue)], args: [(String, PickleValue)])? {
        guard arguments.optimizer != .sgd else { return nil }
        let adam = MegatronOptimizerCommon.Adam(beta1: Double(arguments.adamBeta1), beta2: Double(arguments.adamBeta2),
                                                eps: Double(arguments.adamEps))
        return MegatronOptimizerCommon.entries(scheduler: schedule.scheduler, adam: adam, steps: optimizer.stepCount)
    }

    /// Megatron's names of the optimizer's state buffers.
    var optimizerStateNames: [String] { arguments.optimizer == .sgd ? ["momentum_buffer"] : ["exp_avg", "exp_avg_sq"] }

    /// What the checkpoint of this iteration records beside its tensors: training progress, optimizer, scheduler and
    /// dropout positions, the run's arguments and layout, and the model's description. `savedLayout`: "whole" (the
    /// single-rank layout, `tensors` its shapes) or "sharded" (torch_dist boxes; no shapes recorded here).
    func manifest(shapes tensors: [String: Tensor], savedLayout: String = "whole") throws -> CheckpointManifest {
        var manifest = CheckpointManifest()
        manifest.consumedSamples = consumedSamples
        manifest.numFloatingPointOperationsSoFar = reporter.flopsSoFar
        manifest.optimizerSteps = optimizer.stepCount
        manifest.rng = CheckpointManifest.DropoutRNG(dropoutOffset: Int(model.dropoutGenerator.offset),
                                                     tensorParallelDropoutOffset: Int(model.dropoutRNG.tensorParallel.offset),
                                                     dropoutSeed: Int(model.dropoutGenerator.seed))
        manifest.args = try JSONValue(encoding: arguments)
        manifest.parallel = CheckpointManifest.ParallelLayout(
            tensorModelParallelSize: parallel.tensor.size, pipelineModelParallelSize: parallel.pipeline.size,
            dataParallelSize: parallel.data.size, savedLayout: savedLayout)
        manifest.shapes = tensors.isEmpty ? nil : tensors.mapValues { $0.shape }
        manifest.optParamScheduler = schedule.scheduler.state()
        manifest.gradScaler = (gradScaler as? DynamicGradScaler)?.state()
        manifest.fp8Scaling = fp8ScalingForCheckpoint()
        GPTCheckpoint.describe(model, vocabSize: vocabularySize, in: &manifest)
        return manifest
    }

    /// `--save-retain-interval`, as Megatron: the checkpoint the tracker named before this save goes, unless it
    /// is a multiple of the interval (or this one). A failed deletion is reported, never fatal.
    func deleteUnretained(_ previous: Int, every retain: Int, from store: CheckpointDirectory, current: Int) throws {
        guard previous > 0, previous != current, previous % retain != 0 else { return }
        do {
            try store.delete(iteration: previous)
        } catch {
            log("  encountered exception \"\(error)\" when trying to delete checkpoint from iteration "
                + "\(String(format: "%7d", previous)) at \(store.root.path)")
            return
        }
        log(MegatronLogLines.deletedCheckpoint(iteration: previous, directory: store.root.path))
        try reporter.progress?.append("Deleted checkpoint\tIteration: \(previous)")
    }

    /// The training fields of Megatron-LM's `args` a torch_dist checkpoint records beside the model's.
    var megatronArgs: [(String, PickleValue)] {
        let a = arguments
        return [("seq_length", .int(a.seqLength)), ("micro_batch_size", .int(a.microBatchSize)),
                ("global_batch_size", a.globalBatchSize.map(PickleValue.int) ?? .none), ("train_iters", a.trainIters.map(PickleValue.int) ?? .none),
                ("lr", a.lr.map { .float(Double($0)) } ?? .none), ("min_lr", .float(Double(a.minLR))), ("seed", .int(a.seed)),
                ("iteration", .int(iteration)), ("make_vocab_size_divisible_by", .int(a.makeVocabSizeDivisibleBy)),
                ("tokenizer_type", a.tokenizerType.map { .string($0.rawValue) } ?? .none),
                ("world_size", .int(parallel.world.size)), ("data_parallel_size", .int(parallel.data.size))]
    }

    /// The tokenizer's vocabulary before padding (byte tokens on the embedded corpus).
    var vocabularySize: Int { tokenizer?.vocabSize ?? ByteTokens.vocabularySize }

    /// Loads the checkpoint the tracker in `store` names, as Megatron does: `--finetune` and `release` checkpoints
    /// (what `megatron convert` writes) give the weights only, from iteration 0; `--no-load-optim` keeps the
    /// iteration but starts a fresh optimizer and scheduler; `--no-load-rng` keeps this run's dropout stream.
    func restore(from store: CheckpointDirectory) throws {
        let sharded = try store.openLatestSharded()
        guard let checkpoint = try sharded?.checkpoint ?? store.loadLatest() else {
            if arguments.exitOnMissingCheckpoint {
                throw CheckpointError("--load \(store.root.path): no checkpoint to load (no \(CheckpointDirectory.trackerName)), "
                    + "and --exit-on-missing-checkpoint is set")
            }
            log("WARNING: could not find a checkpoint in \(store.root.path): starting from random weights"
                + Self.orphanedCheckpointsNote(store))
            return
        }
        try requireSameModel(try GPTCheckpoint.ModelDescription(of: checkpoint), checkpoint: checkpoint)
        let source = "\(checkpoint.directory.path)"
        // Conversions write no shapes (and no training state); pretraining checkpoints always do.
        if !checkpoint.isRelease, sharded == nil { try Self.requireRecordedShapes(checkpoint) }
        let slice: [String: Tensor]
        if let reader = sharded?.reader {
            slice = try ShardedGPTCheckpoint.readModel(reader, layout: try shardedLayout(), model: model)
        } else {
            var modelState: [String: Tensor] = [:]
            for (key, t) in checkpoint.tensors where key.hasPrefix("model.") { modelState[String(key.dropFirst(6))] = t }
            slice = try ParallelCheckpoint.modelSlice(modelState, for: model)
        }
        try GPTCheckpoint.loadWeights(Dictionary(uniqueKeysWithValues: slice.map { ("model." + $0.key, $0.value) }), into: model,
                                      source: source)
        if arguments.finetune || checkpoint.isRelease {
            let why = arguments.finetune ? "for finetuning" : "(a release checkpoint: weights only)"
            log("  loaded model weights from \(store.root.path) at iteration \(checkpoint.iteration) \(why); starting at iteration 0")
            return
        }
        let progress = try checkpoint.metadata.decode(SavedProgress.self)
        guard progress.consumedSamples >= 0 else { throw checkpoint.metadata.invalid("consumed_samples", "is \(progress.consumedSamples)") }
        if let flops = progress.floatingPointOperationsSoFar, flops < 0 {
            throw checkpoint.metadata.invalid("num_floating_point_operations_so_far", "is \(flops)")
        }
        if let format = checkpoint.writtenByMegatron {
            try restoreMegatronOptimizer(checkpoint, format: format)
        } else {
            if !arguments.noLoadOptim { try restoreOptimizer(checkpoint, reader: sharded?.reader) }
            if !arguments.noLoadRNG { try restoreRNG(checkpoint, reader: sharded?.reader) }
            try restoreFP8Scaling(checkpoint)
        }
        iteration = checkpoint.iteration
        consumedSamples = progress.consumedSamples
        // Checkpoints written before the count was recorded start it again at 0.
        reporter.flopsSoFar = progress.floatingPointOperationsSoFar ?? 0
        if store.root.standardizedFileURL.path == arguments.save.map({ URL(fileURLWithPath: $0).standardizedFileURL.path }) {
            lastSavedIteration = iteration
        }
        log(MegatronLogLines.loadedCheckpoint(directory: store.root.path, iteration: checkpoint.iteration,
                                              tensor: (parallel.tensorRank, parallel.tensor.size),
                                              pipeline: (parallel.pipelineRank, parallel.pipeline.size))
            + (arguments.noLoadOptim ? " (model only: --no-load-optim)" : ""))
    }

    /// A checkpoint Megatron-LM wrote: its optimizer state (Adam's moments, the fp32 main copies of bf16 / fp16
    /// parameters, step count, scheduler, fp16 loss scale) where its layout could be read, unless `--no-load-optim`; a
    /// layout that could not is an error naming the flag that starts afresh. Its RNG state is never carried (torch's
    /// generators are not this build's).
    func restoreMegatronOptimizer(_ checkpoint: LoadedCheckpoint, format: String) throws {
        let holdsOptimizer = checkpoint.tensors.keys.contains { $0.hasPrefix("optimizer.") }
        if !arguments.noLoadOptim, let why = checkpoint.optimizerNotCarried {
            throw CheckpointError("\(checkpoint.directory.path): a Megatron-LM \(format) checkpoint: \(why); pass --no-load-optim to "
                + "start a fresh optimizer and scheduler from its weights")
        }
        if !arguments.noLoadOptim, holdsOptimizer { try restoreOptimizer(checkpoint) }
        let optimizer = arguments.noLoadOptim ? "its optimizer state is not (--no-load-optim)"
            : holdsOptimizer ? "so are its optimizer state (Adam's moments, step count) and scheduler" + lossScaleNote(checkpoint)
            : "it holds no optimizer state (a fresh optimizer and scheduler start)"
        log("  a Megatron-LM \(format) checkpoint: weights, iteration and consumed samples are carried; \(optimizer); "
            + "its RNG state is not (dropout draws here are this build's own)")
    }

    /// What of the fp16 dynamic loss scaler a Megatron-LM checkpoint carried, said when this run has one.
    func lossScaleNote(_ checkpoint: LoadedCheckpoint) -> String {
        guard gradScaler is DynamicGradScaler else { return "" }
        guard let saved = try? checkpoint.metadata.decode(SavedOptimizer.self).gradScaler else {
            return "; it holds no loss scale (the scaler starts at --initial-loss-scale)"
        }
        return ", with its loss scale \(saved.scale)"
    }

    /// Optimizer state, its step count, the scheduler and the dynamic loss scale.
    /// `reader`: the checkpoint's torch_dist boxes (a sharded checkpoint), read for this rank's shard only.
    func restoreOptimizer(_ checkpoint: LoadedCheckpoint, reader: DistributedCheckpointReader? = nil) throws {
        let saved = try checkpoint.metadata.decode(SavedOptimizer.self)
        guard saved.optimizerSteps >= 0 else { throw checkpoint.metadata.invalid("optimizer_steps", "is \(saved.optimizerSteps)") }
        let source = checkpoint.directory.path
        do {
            if let reader {
                try ShardedGPTCheckpoint.loadOptimizer(optimizer, from: reader, layout: try shardedLayout(), stepCount: saved.optimizerSteps,
                                                       stateNames: optimizerStateNames)
            } else {
                var optimizerState: [String: Tensor] = [:]
                for (key, t) in checkpoint.tensors where key.hasPrefix("optimizer.") { optimizerState[String(key.dropFirst(10))] = t }
                try optimizer.loadState(try ParallelCheckpoint.optimizerSlice(optimizerState, for: model), stepCount: saved.optimizerSteps)
            }
            try schedule.scheduler.load(saved.scheduler)
            if var dynamic = gradScaler as? DynamicGradScaler, let state = saved.gradScaler {
                try dynamic.load(state)
                gradScaler = dynamic
            }
        } catch let error as StateDictError {
            throw CheckpointError("\(source): optimizer state: \(error.description) (--no-load-optim starts a fresh optimizer)")
        } catch let error as OptimizerSetupError {
            throw CheckpointError("\(source): \(error.description)")
        }
    }

    /// The dropout generators' positions: the manifest's, or under pipeline parallelism this stage's (`reader`'s
    /// sharded object). Each stage's stand elsewhere, so a checkpoint of another pipeline size gives none and the
    /// run keeps its own, as Megatron-LM ignores the RNG state when (TP, PP) changed.
    func restoreRNG(_ checkpoint: LoadedCheckpoint, reader: DistributedCheckpointReader? = nil) throws {
        let savedStages = try checkpoint.metadata.decode(SavedLayout.self).parallel?.pipelineModelParallelSize ?? 1
        guard savedStages == parallel.pipeline.size else {
            log("WARNING: --pipeline-model-parallel-size \(parallel.pipeline.size) but the checkpoint was saved with \(savedStages): "
                + "RNG state will be ignored")
            return
        }
        let rng: CheckpointManifest.DropoutRNG
        if savedStages > 1 {
            guard let reader else { throw checkpoint.metadata.invalid("pipeline_model_parallel_size", "is \(savedStages) in a checkpoint not sharded") }
            rng = try ParallelCheckpoint.stageRNG(reader, stage: parallel.pipelineRank, stages: savedStages)
        } else {
            rng = try checkpoint.metadata.decode(SavedRNG.self).rng
        }
        guard rng.dropoutOffset >= 0, rng.tensorParallelDropoutOffset >= 0 else {
            throw checkpoint.metadata.invalid("rng", "holds a negative offset")
        }
        model.dropoutGenerator.offset = UInt64(rng.dropoutOffset)
        if model.dropoutRNG.tensorParallel !== model.dropoutGenerator {
            model.dropoutRNG.tensorParallel.offset = UInt64(rng.tensorParallelDropoutOffset)
        }
    }

    /// Refuses a checkpoint of another model, naming every flag whose value differs from the checkpoint's.
    func requireSameModel(_ saved: GPTCheckpoint.ModelDescription, checkpoint: LoadedCheckpoint) throws {
        let ourShape = GPTCheckpoint.ModelShape(model.config)
        var differences = Self.shapeFlags.compactMap { flag, field -> String? in
            let (theirs, ours) = ("\(saved.shape[keyPath: field])", "\(ourShape[keyPath: field])")
            return theirs == ours ? nil : "\(flag): checkpoint \(theirs), flags \(ours)"
        }
        if saved.untieEmbeddingsAndOutputWeights != arguments.untieEmbeddingsAndOutputWeights {
            differences.append("--untie-embeddings-and-output-weights: checkpoint \(saved.untieEmbeddingsAndOutputWeights), "
                + "flags \(arguments.untieEmbeddingsAndOutputWeights)")
        }
        if model.config.positionEmbeddingType == .learnedAbsolute, saved.maxPositionEmbeddings != model.maxSequenceLength {
            differences.append("--max-position-embeddings: checkpoint \(saved.maxPositionEmbeddings), flags \(model.maxSequenceLength)")
        }
        // A converted Hugging Face model (release) may have more embedding rows than its tokenizer has tokens.
        // So may a Megatron-LM checkpoint, whose args record the padded size only.
        let vocabularyFits = checkpoint.isRelease || checkpoint.writtenByMegatron != nil ? saved.vocabSize >= vocabularySize
            : saved.vocabSize == vocabularySize
        if !vocabularyFits {
            differences.append("vocabulary size (the tokenizer's): checkpoint \(saved.vocabSize), flags \(vocabularySize)")
        }
        guard differences.isEmpty else {
            throw CheckpointError("\(checkpoint.directory.path) holds another model than the flags describe:\n  "
                + differences.joined(separator: "\n  ") + "\nGive the flags the checkpoint was trained with.")
        }
    }

    /// The flags that decide a parameter's shape, and the model field each sets.
    static let shapeFlags: [(String, PartialKeyPath<GPTCheckpoint.ModelShape>)] = [
        ("--num-layers", \.numLayers), ("--hidden-size", \.hiddenSize), ("--num-attention-heads", \.numAttentionHeads),
        ("--num-query-groups", \.numQueryGroups), ("--kv-channels", \.kvChannels), ("--ffn-hidden-size", \.ffnHiddenSize),
        ("--normalization", \.normalization), ("--swiglu", \.gatedLinearUnit), ("bias in linear layers (--disable-bias-linear)", \.addBiasLinear),
        ("--add-qkv-bias", \.addQKVBias), ("--qk-layernorm", \.qkLayernorm), ("--position-embedding-type", \.positionEmbeddingType),
        // gated delta net
        ("--attention-output-gate", \.hasAttentionOutputGate),
        ("Gated DeltaNet (--experimental-attention-variant, --linear-*)", \.gatedDeltaNetLayout),
        ("MoE (--num-experts, --moe-ffn-hidden-size, --moe-layer-freq, --moe-shared-expert-intermediate-size)", \.moeLayout),
    ]

    /// The `shapes` the metadata records match the shard's tensors.
    /// A sharded torch_dist checkpoint records none: its `.metadata` gives every tensor's shape and chunks, which the
    /// reader checks.
    static func requireRecordedShapes(_ checkpoint: LoadedCheckpoint) throws {
        if try checkpoint.metadata.decode(SavedLayout.self).parallel?.savedLayout == "sharded" { return }
        let shapes = try checkpoint.metadata.decode(SavedShapes.self).shapes
        for (name, tensor) in checkpoint.tensors where shapes[name] != tensor.shape {
            throw checkpoint.metadata.invalid("shapes", "gives \(name) as \(shapes[name].map { "\($0)" } ?? "nothing"), "
                + "but the shard holds \(tensor.shape)")
        }
        if let extra = Set(shapes.keys).subtracting(checkpoint.tensors.keys).sorted().first {
            throw checkpoint.metadata.invalid("shapes", "lists \(extra), which the shard does not hold")
        }
    }

    /// A hint when `store` has no tracker but holds iteration directories.
    static func orphanedCheckpointsNote(_ store: CheckpointDirectory) -> String {
        guard let found = try? store.iterations(), let newest = found.last else { return "" }
        return " (it holds \(found.count) iter_* directories but no \(CheckpointDirectory.trackerName); write an iteration, "
            + "e.g. \(newest), into that file to resume from it)"
    }
}

extension Pretrainer {
    /// Takes `--save`'s lock (creating the directory), finishing what an interrupted save left: a path that cannot
    /// hold checkpoints (a file, no permission, a read-only file system, another run's directory) fails here, at
    /// start-up, not at the first save.
    static func lockSaveDirectory(_ save: String?) throws -> SaveDirectoryLock? {
        guard let save else { return nil }
        let store = CheckpointDirectory(root: URL(fileURLWithPath: save))
        do {
            let lock = try SaveDirectoryLock(directory: store.root)
            try store.repairInterruptedSave()
            return lock
        } catch let error as CheckpointError {
            throw CheckpointError("--save \(save): \(error.description)")
        }
    }

    /// `--load` names a directory of checkpoints. A missing directory or one without a tracker only warns later
    /// (Megatron starts from random weights); a file, one checkpoint's own directory or a Hugging Face model is
    /// refused with what to pass instead.
    static func requireCheckpointDirectory(_ load: String?) throws {
        guard let load else { return }
        let fm = FileManager.default
        let root = URL(fileURLWithPath: load)
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: load, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else {
            throw CheckpointError("--load \(load): is a file; give the directory --save wrote (the one holding "
                + "\(CheckpointDirectory.trackerName))")
        }
        guard !fm.fileExists(atPath: root.appendingPathComponent(CheckpointDirectory.trackerName).path) else { return }
        if fm.fileExists(atPath: root.appendingPathComponent("metadata.json").path) {
            throw CheckpointError("--load \(load): is one checkpoint's directory; give the directory that holds it and "
                + "\(CheckpointDirectory.trackerName): --load \(root.deletingLastPathComponent().path)")
        }
        if fm.fileExists(atPath: root.appendingPathComponent("config.json").path) {
            throw CheckpointError("--load \(load): is a Hugging Face model; convert it first: megatron convert --model-type GPT "
                + "--loader hf --saver megatron --load-dir \(load) --save-dir <megatron checkpoint directory>")
        }
    }
}

/// Training progress in a pretraining checkpoint's metadata.
struct SavedProgress: Decodable {
    var consumedSamples: Int
    /// Absent in checkpoints written before it was recorded.
    var floatingPointOperationsSoFar: Double?
    enum CodingKeys: String, CodingKey {
        case consumedSamples = "consumed_samples", floatingPointOperationsSoFar = "num_floating_point_operations_so_far"
    }
}

/// How the state was saved: "whole" (the single-rank layout) or "sharded" (torch_dist boxes).
struct SavedLayout: Decodable {
    var parallel: CheckpointManifest.ParallelLayout?
}

/// Each tensor's shape, as the save recorded it.
struct SavedShapes: Decodable {
    var shapes: [String: [Int]]
}

/// What the optimizer, the scheduler and the loss scaler resume from.
struct SavedOptimizer: Decodable {
    var optimizerSteps: Int
    var scheduler: OptimizerParamScheduler.State
    var gradScaler: DynamicGradScaler.State?
    enum CodingKeys: String, CodingKey {
        case optimizerSteps = "optimizer_steps", scheduler = "opt_param_scheduler", gradScaler = "grad_scaler"
    }
}

/// Where the dropout generators stood.
struct SavedRNG: Decodable {
    var rng: CheckpointManifest.DropoutRNG
}

/// Whether a termination signal asked training to save and stop (`--exit-signal-handler`).
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var source: DispatchSourceSignal?

    /// With `listening`, `signalNumber` (SIGTERM unless `--exit-signal` names another) sets `requested`.
    init(listening: Bool, signal signalNumber: Int32 = SIGTERM) {
        guard listening else { return }
        source = catchSignal(signalNumber) { [weak self] in self?.set() }
    }

    deinit { source?.cancel() }

    private func set() {
        lock.lock()
        flag = true
        lock.unlock()
    }

    var requested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }
}

extension Pretrainer {
    /// Where this rank's parameters lie in a sharded checkpoint.
    func shardedLayout() throws -> ShardedGPTLayout {
        try ShardedGPTLayout(model: model, tensorRank: parallel.tensorRank, tensorSize: parallel.tensor.size)
    }
}
