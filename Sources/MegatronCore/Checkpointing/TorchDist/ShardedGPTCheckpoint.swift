import Foundation
import MegatronTensor

/// One rank's part of a GPT training checkpoint in torch_dist, written and read without gathering anything: the
/// rank's tensor-parallel slice of each parameter (a parameter every rank of a replica group holds is written by
/// its first rank), its distributed-optimizer shard of the fp32 masters and moments (as boxes of the
/// fully-reshardable `optimizer.state.<exp_avg|exp_avg_sq|param>.<key>` tensors), or, without the distributed
/// optimizer, the first data-parallel rank's whole local optimizer state.
///
/// ```swift
/// let layout = try ShardedGPTLayout(model: model, tensorRank: tp.rank, tensorSize: tp.size)
/// let chunks = try ShardedGPTCheckpoint.chunks(model: model, optimizer: optimizer, layout: layout, firstReplica: dp.rank == 0)
/// let weights = try ShardedGPTCheckpoint.readModel(reader, layout: layout, model: model)
/// ```
public enum ShardedGPTCheckpoint {
    /// The chunks this rank writes. `firstReplica`: this rank is the first of the ranks holding the same model
    /// slice (data-parallel rank 0). `copied`: every chunk is a host copy sharing nothing with the live state, so
    /// that training may go on while it is written (`--async-save`; device tensors are always copied to the host,
    /// through the pinned staging buffers).
    /// `experts`: under expert parallelism, who writes the expert parameters (`ExpertWriters`) instead.
    public static func chunks(model: GPTModel, optimizer: TrainingOptimizer, layout: ShardedGPTLayout, firstReplica: Bool,
                              stateNames: [String], copied: Bool = false,
                              experts: ExpertWriters? = nil) throws -> [DistributedCheckpoint.Chunk] {
        var chunks: [DistributedCheckpoint.Chunk] = []
        // Whether this rank writes parameter `name`'s state; `replicated`: it is not sharded over data parallelism.
        func writes(_ name: String, replicated: Bool) -> Bool {
            if let experts, experts.names.contains(name) {
                return (!replicated || experts.firstReplica) && (experts.writesWhole || !layout.isDuplicated(name))
            }
            return (!replicated || firstReplica) && layout.writes(name)
        }
        for (name, p) in model.namedParameters() + model.checkpointBuffers() where writes(name, replicated: true) {
            let own = pieces("", name, ShardBox(whole: p.shape), values: p, layout, copied)
            chunks += own
            if let alias = layout.alias(of: name) { chunks += own.map { var chunk = $0; chunk.key = alias; return chunk } }
        }
        if let distributed = optimizer.distributed {
            for piece in distributed.ownedState() where writes(piece.parameter, replicated: false) {
                let prefix = try optimizerPrefix(piece.key, stateNames)
                var start = 0
                for box in ShardBox.covering(flat: piece.parameterRange, of: piece.parameterShape) {
                    let values = piece.values.narrowed(0, start: start, length: box.count).reshaped(box.sizes)
                    chunks += pieces(prefix, piece.parameter, box, values: values, layout, copied)
                    start += box.count
                }
            }
        } else if firstReplica || experts?.firstReplica == true {
            var state = try optimizer.stateTensors()
            // Megatron's fully reshardable layout holds every parameter's main copy: an fp32 parameter's is itself.
            for (name, p) in model.namedParameters() where p.dtype == .float32 && state["master." + name] == nil { state["master." + name] = p }
            for (key, t) in state.sorted(by: { $0.key < $1.key }) {
                let name = try parameterName(key)
                guard writes(name, replicated: true) else { continue }
                chunks += pieces(try optimizerPrefix(key, stateNames), name, ShardBox(whole: t.shape), values: t, layout, copied)
            }
        }
        return chunks
    }

    /// The chunks of `values`, the `box` of this rank's tensor of parameter `name`.
    static func pieces(_ prefix: String, _ name: String, _ box: ShardBox, values: Tensor,
                       _ layout: ShardedGPTLayout, _ copied: Bool) -> [DistributedCheckpoint.Chunk] {
        layout.pieces(of: name, localBox: box).map { local, global in
            let view = local.relative(to: box.offsets).view(of: values)
            let host = view.device != .cpu ? view.to(.cpu) : copied ? freshCopy(view) : view.madeContiguous()
            let data = host.reshaped(global.sizes)
            return DistributedCheckpoint.Chunk(key: prefix + layout.key(of: name), globalShape: layout.globalShape(of: name), box: global,
                                               tensor: data)
        }
    }

    /// This rank's model parameters and checkpoint buffers (local shapes, `model.`-less names) read from `reader`'s
    /// boxes. Rows of a vocabulary padded beyond the saved one are zero; rows past this model's padding are not read.
    public static func readModel(_ reader: DistributedCheckpointReader, layout: ShardedGPTLayout, model: GPTModel) throws -> [String: Tensor] {
        try requireMegatronExpertLayout(reader)
        var state: [String: Tensor] = [:]
        for (name, p) in model.namedParameters() + model.checkpointBuffers() {
            state[name] = try readBox("", name, ShardBox(whole: p.shape), dtype: p.dtype, reader, layout)
        }
        return state
    }

    /// Refuses a checkpoint of earlier builds, which kept one key per routed expert (`…mlp.experts.local_experts.<n>.…`)
    /// where Megatron keeps one key with an expert axis (`…mlp.experts.experts.…`): its boxes are not where this
    /// build looks. Read whole (`convert`, `generate`) it still loads.
    static func requireMegatronExpertLayout(_ reader: DistributedCheckpointReader) throws {
        guard let old = reader.tensorKeys.first(where: { $0.contains(MegatronGPTLayout.localExpertsInfix) }) else { return }
        throw CheckpointError("\(reader.directory.path): its experts are saved one key per expert (\(old)), the layout of earlier "
            + "builds; this build resumes Megatron's layout (one ...mlp.experts.experts... key with an expert axis). Resume it with the "
            + "build that wrote it, or rewrite its weights: megatron convert --model-type GPT --loader megatron --saver megatron "
            + "--load-dir <its --save directory> --save-dir <new directory>, then --load that with --finetune")
    }

    /// Loads this rank's optimizer state from `reader`: the distributed optimizer reads only its shard's boxes.
    public static func loadOptimizer(_ optimizer: TrainingOptimizer, from reader: DistributedCheckpointReader, layout: ShardedGPTLayout,
                                     stepCount: Int, stateNames: [String]) throws {
        if let distributed = optimizer.distributed {
            try distributed.loadOwnedState(stepCount: stepCount) { key, range, shape in
                let name = try parameterName(key), prefix = try savedPrefix(key, name, stateNames, reader, layout)
                let boxes = try ShardBox.covering(flat: range, of: shape).map {
                    try readBox(prefix, name, $0, dtype: .float32, reader, layout).reshaped([-1])
                }
                return boxes.count == 1 ? boxes[0] : Ops.concat(boxes, dim: 0)
            }
            return
        }
        var state: [String: Tensor] = [:]
        for (key, t) in try optimizer.stateTensors() {
            let name = try parameterName(key)
            state[key] = try readBox(try savedPrefix(key, name, stateNames, reader, layout), name, ShardBox(whole: t.shape), dtype: t.dtype,
                                     reader, layout)
        }
        try optimizer.loadState(state, stepCount: stepCount)
    }

    /// The `box` of this rank's tensor `prefix` + parameter `name`, assembled from the global boxes it is.
    static func readBox(_ prefix: String, _ name: String, _ box: ShardBox, dtype: DType, _ reader: DistributedCheckpointReader,
                        _ layout: ShardedGPTLayout) throws -> Tensor {
        let result = Tensor(zeros: box.sizes, dtype: dtype)
        for (local, global) in layout.pieces(of: name, localBox: box) {
            let piece = try reader.read(prefix + layout.key(of: name), box: global, dtype: dtype)
            Ops.copy(piece.reshaped(local.sizes), into: local.relative(to: box.offsets).view(of: result))
        }
        return result
    }

    /// `optimizer.state.<Megatron state name>.` for optimizer state key `<role>.<param>`.
    static func optimizerPrefix(_ key: String, _ stateNames: [String]) throws -> String {
        guard let dot = key.firstIndex(of: ".") else { throw CheckpointError("optimizer state \(key) has no parameter name") }
        return MegatronCheckpointFormat.optimizerPrefix + MegatronCheckpointFormat.megatronStateName(String(key[..<dot]), stateNames) + "."
    }

    /// The prefix state `key` of parameter `name` was saved under: earlier builds named the masters `fp32_param`.
    static func savedPrefix(_ key: String, _ name: String, _ stateNames: [String], _ reader: DistributedCheckpointReader,
                            _ layout: ShardedGPTLayout) throws -> String {
        let prefix = try optimizerPrefix(key, stateNames)
        let legacy = MegatronCheckpointFormat.optimizerPrefix + MegatronCheckpointFormat.legacyMasterName + "."
        guard key.hasPrefix("master."), reader.shape(of: prefix + layout.key(of: name)) == nil,
              reader.shape(of: legacy + layout.key(of: name)) != nil else { return prefix }
        return legacy
    }

    static func parameterName(_ key: String) throws -> String {
        guard let dot = key.firstIndex(of: ".") else { throw CheckpointError("optimizer state \(key) has no parameter name") }
        return String(key[key.index(after: dot)...])
    }
}

/// Which ranks write the expert parameters of a checkpoint under expert parallelism: each expert is held by
/// one expert-parallel rank per expert-data-parallel replica (and, with expert-tensor-parallel size = TP, whole
/// on every tensor-parallel rank).
public struct ExpertWriters {
    public var names: Set<String>
    /// This rank is expert-data-parallel rank 0.
    public var firstReplica: Bool
    /// This rank writes the experts it holds whole (expert-tensor-parallel rank 0).
    public var writesWhole: Bool

    public init(names: Set<String>, firstReplica: Bool, writesWhole: Bool) {
        (self.names, self.firstReplica, self.writesWhole) = (names, firstReplica, writesWhole)
    }
}
