import MegatronCore
import MegatronParallel
import MegatronTensor

/// Checkpoints of parallel runs load into any (TP, DP) layout. torch_dist ones are sharded: each rank writes its
/// own boxes of the single-rank layout's tensors (`chunks`) and reads the boxes its layout needs. Safetensors ones
/// hold the whole state: saving gathers every rank's slices, loading cuts this rank's slices out. Either way the
/// vocabulary padding, which depends on TP, is trimmed or zero-padded to the loading model's.
enum ParallelCheckpoint {
    /// What this rank writes of a sharded checkpoint (no collective); `copied`: host copies the training may not touch.
    static func chunks(model: GPTModel, optimizer: TrainingOptimizer, parallel: ParallelState,
                       stateNames: [String], copied: Bool) throws -> [DistributedCheckpoint.Chunk] {
        let layout = try ShardedGPTLayout(model: model, tensorRank: parallel.tensorRank, tensorSize: parallel.tensor.size)
        let experts = parallel.expert.size > 1
            ? ExpertWriters(names: model.expertParameterNames(), firstReplica: parallel.expertData.rank == 0,
                            writesWhole: parallel.expertTensor.rank == 0)
            : nil
        return try ShardedGPTCheckpoint.chunks(model: model, optimizer: optimizer, layout: layout,
                                               firstReplica: parallel.dataWithContext.rank == 0, stateNames: stateNames,
                                               copied: copied, experts: experts)
    }

    static let vocabularyParameters = ["embedding.word_embeddings.weight", "output_layer.weight"]

    /// Under pipeline parallelism, this rank's stage's dropout generator positions as a sharded object (the stage's
    /// first tensor- and data-parallel rank writes it; Megatron keeps `rng_state` per stage so): each stage has
    /// drawn its own dropout masks. None without pipelining: the manifest's `rng` holds the one model's.
    static func stageRNGObjects(model: GPTModel, parallel: ParallelState) -> [(String, PickleValue)] {
        guard parallel.pipeline.size > 1, parallel.tensorRank == 0, parallel.dataWithContext.rank == 0 else { return [] }
        let value = PickleValue.stringDict([
            ("dropout_offset", .int(Int(model.dropoutGenerator.offset))),
            ("tensor_parallel_dropout_offset", .int(Int(model.dropoutRNG.tensorParallel.offset))),
            ("dropout_seed", .int(Int(model.dropoutGenerator.seed))),
        ])
        return [(stageRNGKey(stage: parallel.pipelineRank, stages: parallel.pipeline.size), value)]
    }

    /// Stage `stage`'s dropout generator positions, as `stageRNGObjects` wrote them.
    static func stageRNG(_ reader: DistributedCheckpointReader, stage: Int, stages: Int) throws -> CheckpointManifest.DropoutRNG {
        let key = stageRNGKey(stage: stage, stages: stages)
        let saved = try reader.object(key)
        guard let dropout = saved["dropout_offset"]?.intValue, let tensorParallel = saved["tensor_parallel_dropout_offset"]?.intValue,
              let seed = saved["dropout_seed"]?.intValue else {
            throw CheckpointError("\(reader.directory.path): \(key) is not a stage's dropout RNG state (--no-load-rng skips it)")
        }
        return CheckpointManifest.DropoutRNG(dropoutOffset: dropout, tensorParallelDropoutOffset: tensorParallel, dropoutSeed: seed)
    }

    /// A sharded object's unique key, as Megatron's `ShardedObject` names them: offset and global shape in the
    /// pipeline axis.
    static func stageRNGKey(stage: Int, stages: Int) -> String { "megatron_swift_rng/shard_\(stage)_\(stages)" }

    /// This rank's model parameters and optimizer state in full (a collective over the tensor-parallel group).
    static func gather(model: GPTModel, optimizerState: [String: Tensor]) throws -> (model: [String: Tensor], optimizer: [String: Tensor]) {
        guard let comm = model.tensorParallel.communicator, comm.size > 1 else {
            return (model.stateDict(), optimizerState)
        }
        let parameterShardings = model.tensorParallelShardings()
        let fullModel = TensorParallelResharding.gather(model, group: model.tensorParallel)
        let shardings = try TensorParallelResharding.optimizerStateShardings(keys: optimizerState.keys,
                                                                             parameterShardings: parameterShardings)
        var pieces = [[String: Tensor]](repeating: [:], count: comm.size)
        for key in optimizerState.keys.sorted() {
            let local = optimizerState[key]!.madeContiguous()
            let all = Tensor.zeros([comm.size * local.count], dtype: local.dtype, device: local.device)
            try comm.allGather(local.reshaped([-1]), into: all).wait()
            for r in 0..<comm.size {
                pieces[r][key] = all.narrowed(0, start: r * local.count, length: local.count).reshaped(local.shape)
            }
        }
        return (fullModel, try TensorParallelResharding.merge(pieces, shardings: shardings))
    }

    /// This rank's slices of a full model state (vocabulary rows fitted to the model's padding first); checkpoint
    /// buffers (the expert bias), which every rank holds whole, pass as they are.
    static func modelSlice(_ full: [String: Tensor], for model: GPTModel) throws -> [String: Tensor] {
        let (parameters, buffers) = GPTModel.splitBuffers(full)
        var state = stagePart(parameters, of: model) { $0 }
        let rows = model.vocabSize
        for name in vocabularyParameters where state[name] != nil { state[name] = fitRows(state[name]!, to: rows) }
        let group = model.tensorParallel
        if group.size > 1 {
            state = try TensorParallelResharding.shard(state, shardings: model.tensorParallelShardings(), rank: group.rank, size: group.size)
        }
        return state.merging(buffers) { parameter, _ in parameter }
    }

    /// This rank's slices of a full optimizer state (`master.<param>`, `state<k>.<param>`).
    static func optimizerSlice(_ full: [String: Tensor], for model: GPTModel) throws -> [String: Tensor] {
        var state = stagePart(full, of: model) { key in key.firstIndex(of: ".").map { String(key[key.index(after: $0)...]) } ?? key }
        for (key, t) in state where vocabularyParameters.contains(where: { key.hasSuffix("." + $0) }) {
            state[key] = fitRows(t, to: model.vocabSize)
        }
        let group = model.tensorParallel
        guard group.size > 1 else { return state }
        let shardings = try TensorParallelResharding.optimizerStateShardings(keys: state.keys,
                                                                             parameterShardings: model.tensorParallelShardings())
        return try TensorParallelResharding.shard(state, shardings: shardings, rank: group.rank, size: group.size)
    }

    /// The entries of a whole model's `state` for `model`'s pipeline stage and experts: those whose `parameter` it holds.
    static func stagePart(_ state: [String: Tensor], of model: GPTModel, parameter: (String) -> String) -> [String: Tensor] {
        guard !model.stage.isWhole || model.moeLayers.contains(where: { $0.expertParallel.size > 1 }) else { return state }
        let held = Set(model.namedParameters().map(\.0))
        return state.filter { held.contains(parameter($0.key)) }
    }

    /// `t` with `rows` rows: padding rows past the real vocabulary dropped, or zero rows added.
    static func fitRows(_ t: Tensor, to rows: Int) -> Tensor {
        t.size(0) > rows ? t.narrowed(0, start: 0, length: rows).madeContiguous() : GPTModel.zeroPadRows(t, to: rows)
    }
}
