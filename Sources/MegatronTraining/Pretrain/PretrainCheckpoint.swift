import Foundation
import MegatronCore
import MegatronTensor

extension Pretrainer {
    /// Saves model, optimizer, RNG and progress as `<save>/iter_XXXXXXX/` and updates the tracker.
    ///
    /// In a data-parallel run every rank takes part (the distributed optimizer gathers its shards) and
    /// world rank 0 writes the whole state, which any data-parallel size loads.
    func saveCheckpoint() throws {
        guard let save = arguments.save else { return }
        try optimizer.finishParameterUpdates()
        let (modelState, optimizerState) = try ParallelCheckpoint.gather(model: model, optimizerState: try optimizer.stateTensors())
        guard (groups?.world.rank ?? 0) == 0 else { return }
        let store = CheckpointDirectory(root: URL(fileURLWithPath: save))
        var tensors: [String: Tensor] = [:]
        for (name, p) in modelState { tensors["model." + name] = p }
        for (name, t) in optimizerState { tensors["optimizer." + name] = t }
        let argsJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(arguments))
        var metadata: [String: Any] = [
            "consumed_samples": consumedSamples,
            "optimizer_steps": optimizer.stepCount,
            // The tensor-parallel generator (split activations) advances as the shared one does on every rank,
            // so one offset restores it on any rank.
            "rng": ["dropout_seed": Int(model.dropoutGenerator.seed), "dropout_offset": Int(model.dropoutGenerator.offset),
                    "tensor_parallel_dropout_offset": Int(model.dropoutRNG.tensorParallel.offset)],
            "args": argsJSON,
            // The state is saved whole (single-rank layout); this records the layout that wrote it.
            "parallel": ["tensor_model_parallel_size": groups?.tensorParallelSize ?? 1, "pipeline_model_parallel_size": 1,
                         "data_parallel_size": groups?.dataParallelSize ?? 1, "saved_layout": "whole"],
            "shapes": tensors.mapValues { $0.shape },
        ]
        metadata["opt_param_scheduler"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(schedule.scheduler.state()))
        if let dynamic = gradScaler as? DynamicGradScaler {
            metadata["grad_scaler"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(dynamic.state()))
        }
        metadata.merge(try GPTCheckpoint.description(of: model, vocabSize: tokenizer?.vocabSize ?? ByteTokens.vocabularySize)) { a, _ in a }
        try store.save(iteration: iteration, tensors: tensors.mapValues { $0.to(.cpu) }, metadata: metadata)
        if let keep = arguments.keepLastCheckpoints { try store.prune(keep: keep) }
        log("  successfully saved checkpoint from iteration \(String(format: "%7d", iteration)) to \(save)")
    }

    /// Loads the checkpoint the tracker in `store` names; with `--finetune` only the model, from iteration 0.
    func restore(from store: CheckpointDirectory) throws {
        guard let (loadedIteration, tensors, metadata) = try store.loadLatest() else {
            if arguments.exitOnMissingCheckpoint {
                throw CheckpointError("--exit-on-missing-checkpoint: no checkpoint in --load \(store.root.path) (no latest_checkpointed_iteration.txt)")
            }
            log("WARNING: could not find a checkpoint in \(store.root.path): starting from random weights")
            return
        }
        var modelState: [String: Tensor] = [:]
        for (key, t) in tensors where key.hasPrefix("model.") { modelState[String(key.dropFirst(6))] = t }
        let slice = try ParallelCheckpoint.modelSlice(modelState, for: model)
        try GPTCheckpoint.loadWeights(Dictionary(uniqueKeysWithValues: slice.map { ("model." + $0.key, $0.value) }), into: model,
                                      source: "\(store.root.path) iteration \(loadedIteration)")
        if arguments.finetune {
            log("  loaded model weights from \(store.root.path) at iteration \(loadedIteration) for finetuning")
            return
        }
        iteration = loadedIteration
        consumedSamples = metadata["consumed_samples"] as? Int ?? 0
        if !arguments.noLoadOptim {
            var optimizerState: [String: Tensor] = [:]
            for (key, t) in tensors where key.hasPrefix("optimizer.") { optimizerState[String(key.dropFirst(10))] = t }
            try optimizer.loadState(try ParallelCheckpoint.optimizerSlice(optimizerState, for: model),
                                    stepCount: metadata["optimizer_steps"] as? Int ?? 0)
            try restoreSchedulerAndScaler(metadata, source: store.root.path)
        }
        if !arguments.noLoadRNG, let rng = metadata["rng"] as? [String: Int], let offset = rng["dropout_offset"] {
            model.dropoutGenerator.offset = UInt64(offset)
            if let split = rng["tensor_parallel_dropout_offset"], model.dropoutRNG.tensorParallel !== model.dropoutGenerator {
                model.dropoutRNG.tensorParallel.offset = UInt64(split)
            }
        }
        log("  loaded checkpoint from \(store.root.path) at iteration \(loadedIteration)")
    }
}

extension Pretrainer {
    /// Loads the scheduler's state (Megatron's override / use-checkpoint rules) and the dynamic loss scale.
    func restoreSchedulerAndScaler(_ metadata: [String: Any], source: String) throws {
        func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T? {
            guard let object = metadata[key] else { return nil }
            do {
                return try JSONDecoder().decode(type, from: JSONSerialization.data(withJSONObject: object))
            } catch {
                throw CheckpointError("\(source): unreadable \(key) state: \(error)")
            }
        }
        if let state = try decode(OptimizerParamScheduler.State.self, "opt_param_scheduler") {
            do {
                try schedule.scheduler.load(state)
            } catch let error as OptimizerSetupError {
                throw CheckpointError("\(source): \(error.description)")
            }
        }
        if var dynamic = gradScaler as? DynamicGradScaler, let state = try decode(DynamicGradScaler.State.self, "grad_scaler") {
            try dynamic.load(state)
            gradScaler = dynamic
        }
    }
}

/// Whether a termination signal asked training to save and stop (`--exit-signal-handler`).
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var source: DispatchSourceSignal?
    private let signalNumber: Int32

    /// With `listening`, `signalNumber` (SIGTERM unless `--exit-signal` names another) sets `requested`.
    init(listening: Bool, signal signalNumber: Int32 = SIGTERM) {
        self.signalNumber = signalNumber
        guard listening else { return }
        signal(signalNumber, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
        source.setEventHandler { [weak self] in self?.set() }
        source.resume()
        self.source = source
    }

    deinit {
        if source != nil {
            source?.cancel()
            signal(signalNumber, SIG_DFL)
        }
    }

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
