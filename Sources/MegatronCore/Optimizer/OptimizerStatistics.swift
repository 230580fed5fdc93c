import MegatronTensor

/// Megatron's logged optimizer statistics (`--log-params-norm`, `--log-num-zeros-in-grad`) over what this
/// optimizer holds: the fp32 master weights (Megatron's main params) and the fp32 main gradients. A parameter
/// duplicated on every tensor-parallel rank counts once, and each rank's share is summed over `gradStats`'
/// groups, as the gradient norm is: every rank of those groups must call these together.
///
/// ```swift
/// let paramsNorm = try optimizer.parameterNorm(gradStats: stats)
/// let zeros = try optimizer.gradientZeroCount(gradStats: stats)   // after backward, before the next zeroGrad
/// ```
extension MixedPrecisionOptimizer {
    /// The L2 norm of the master weights (`calc_params_l2_norm`).
    public func parameterNorm(gradStats: GradientStatsGroups) throws -> Double {
        let counted = zip(parameterNames, masters).filter { gradStats.countsInNorm($0.0) }.map(\.1)
        let total = try gradStats.reduce(squares: TensorStatistics.sumOfSquares(counted), nonFinite: false, device: device)
        return total.squares.squareRoot()
    }

    /// The number of zero elements in the main gradients (`count_zeros_fp32`); a parameter backward never
    /// reached has no gradient and counts none, as there.
    public func gradientZeroCount(gradStats: GradientStatsGroups) throws -> Int {
        let counted = zip(parameterNames, parameters).filter { gradStats.countsInNorm($0.0) }.compactMap(\.1.grad)
        return try gradStats.sum(count: TensorStatistics.zeroCount(counted), device: device)
    }

    private var parameterNames: [String] { groups.flatMap(\.parameters).map(\.name) }

    private var device: Device { masters.first?.device ?? .cpu }
}
