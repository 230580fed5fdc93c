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
            let local = optimizerState[key]!.contiguous()
            let all = Tensor.zeros([comm.size * local.count], dtype: local.dtype, device: local.device)
            try comm.allGather(local.reshaped([-1]), into: all).wait()
            for r in 0..<comm.size {
                pieces[r][key] = all.narrowed(0, start: r * local.count, length: local.count).reshaped(local.shape)
            }
        }
        return (fullModel, try TensorParallelResharding.merge(pieces, shardings: shardings))
    }

    /// This rank's slices of a full model state (vocabulary rows fitted to the model's padding first).
    static func modelSlice(_ full: [String: Tensor], for model: GPTModel) throws -> [String: Tensor] {
        var state = full
        let rows = model.vocabSize
        for name in vocabularyParameters where state[name] != nil { state[name] = fitRows(state[name]!, to: rows) }
        let group = model.tensorParallel
        guard group.size > 1 else { return state }
        return try TensorParallelResharding.shard(state, shardings: model.tensorParallelShardings(), rank: group.rank, size: group.size)
    }

    /// This rank's slices of a full optimizer state (`master.<param>`, `state<k>.<param>`).
    static func optimizerSlice(_ full: [String: Tensor], for model: GPTModel) throws -> [String: Tensor] {
        var state = full
        for (key, t) in full where vocabularyParameters.contains(where: { key.hasSuffix("." + $0) }) {
            state[key] = fitRows(t, to: model.vocabSize)
        }
        let group = model.tensorParallel
        guard group.size > 1 else { return state }
        let shardings = try TensorParallelResharding.optimizerStateShardings(keys: state.keys,
                                                                             parameterShardings: model.tensorParallelShardings())
        return try TensorParallelResharding.shard(state, shardings: shardings, rank: group.rank, size: group.size)
    }

    /// `t` with `rows` rows: padding rows past the real vocabulary dropped, or zero rows added.
    static func fitRows(_ t: Tensor, to rows: Int) -> Tensor {
        t.size(0) > rows ? t.narrowed(0, start: 0, length: rows).contiguous() : GPTModel.zeroPadRows(t, to: rows)
    }
}
