import MegatronTensor

extension DistributedOptimizer {
    /// One piece of this rank's optimizer shard: the elements `parameterRange` of the flattened state `key`
    /// (`state<k>.<param>`, `master.<param>`: the fp32 main parameter, an fp32 parameter's own values), as a view of
    /// the shard (`values`).
    public struct OwnedStatePiece {
        public let key: String
        public let parameter: String
        public let parameterShape: [Int]
        public let parameterRange: Range<Int>
        public let values: Tensor
    }

    /// What this rank owns of the optimizer state, without any collective: a sharded checkpoint writes exactly
    /// these pieces (the inverse of `loadOwnedState`).
    public func ownedState() -> [OwnedStatePiece] {
        var out: [OwnedStatePiece] = []
        for (b, buffer) in ddp.buffers.enumerated() {
            for shard in shards[b] {
                // Megatron's fully reshardable layout holds every parameter's main copy, fp32 ones included.
                let roles = shard.states.enumerated().map { ("state\($0.offset).", $0.element) } + [("master.", shard.master)]
                for (prefix, state) in roles {
                    for piece in shard.pieces where !piece.parameterRange.isEmpty {
                        out.append(OwnedStatePiece(key: prefix + piece.name, parameter: piece.name,
                                                   parameterShape: buffer.parameters[piece.parameter].tensor.shape,
                                                   parameterRange: piece.parameterRange,
                                                   values: ParamAndGradBuffer.view(state, piece.shardRange)))
                    }
                }
            }
        }
        return out
    }
}
