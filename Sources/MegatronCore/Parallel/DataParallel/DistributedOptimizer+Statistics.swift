import MegatronTensor

/// `MixedPrecisionOptimizer`'s logged statistics (see OptimizerStatistics.swift) for the distributed optimizer,
/// whose masters and reduced gradients are sharded over the data-parallel ranks: each rank measures its shard
/// pieces and the sums span the data-parallel group and the model-parallel groups of `gradStats`.
extension DistributedOptimizer {
    /// The L2 norm of the master weights: each rank's shard pieces, summed over the data-parallel and
    /// model-parallel groups (`calc_params_l2_norm` over sharded main params).
    public func parameterNorm() throws -> Double {
        let pieces = countedPieces { shard, _, range in ParamAndGradBuffer.view(shard.master, range) }
        let total = try gradStats.reduce(squares: TensorStatistics.sumOfSquares(pieces), nonFinite: false, device: device)
        return total.squares.squareRoot()
    }

    /// The number of zero elements in this rank's shard of the reduced gradients, summed over the groups
    /// (`count_zeros_fp32` with the distributed optimizer's whole-world statistics group).
    public func gradientZeroCount() throws -> Int {
        let pieces = countedPieces { _, grad, range in ParamAndGradBuffer.view(grad, range) }
        return try gradStats.sum(count: TensorStatistics.zeroCount(pieces), device: device)
    }

    /// `view(shard, shard gradient, piece range)` for every piece of this rank's shards that counts in the norm.
    private func countedPieces(_ view: (OwnedShard, Tensor, Range<Int>) -> Tensor) -> [Tensor] {
        var out: [Tensor] = []
        for list in shards {
            for shard in list {
                let grad = shard.mainGrad
                for piece in shard.pieces where gradStats.countsInNorm(piece.name) {
                    out.append(view(shard, grad, piece.shardRange))
                }
            }
        }
        return out
    }

    private var device: Device { ddp.buffers.first?.device ?? .cpu }
}
