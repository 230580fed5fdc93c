import MegatronParallel
import MegatronTensor

/// The ranks a gradient norm and an inf/NaN check must span, and which parameters count in the norm.
///
/// Ranks of a model-parallel group hold different gradients (tensor-parallel shards, pipeline stages), and
/// with the distributed optimizer the data-parallel ranks hold different shards too: the squared norms are
/// summed and the inf/NaN flags OR-ed over every group listed. A parameter duplicated on every
/// tensor-parallel rank (a layer norm without sequence parallelism) counts only on tensor-parallel rank 0,
/// Megatron's `param_is_not_tensor_parallel_duplicate`, so it is not counted once per rank.
///
/// ```swift
/// let stats = GradientStatsGroups(groups: [dp, modelParallel], tensorParallelRank: tp.rank,
///                                 duplicatedParameters: ["decoder.final_layernorm.weight"])
/// let total = try stats.sum(localSumOfSquares, device: .cpu).squareRoot()
/// ```
public struct GradientStatsGroups {
    public var groups: [Communicator]
    public var tensorParallelRank: Int
    /// Names of parameters whose gradients are the same on every tensor-parallel rank.
    public var duplicatedParameters: Set<String>

    public init(groups: [Communicator] = [], tensorParallelRank: Int = 0, duplicatedParameters: Set<String> = []) {
        self.groups = groups
        self.tensorParallelRank = tensorParallelRank
        self.duplicatedParameters = duplicatedParameters
    }

    /// Whether parameter `name`'s gradient enters this rank's share of the norm.
    public func countsInNorm(_ name: String) -> Bool {
        tensorParallelRank == 0 || !duplicatedParameters.contains(name)
    }

    /// `value` summed over every group (in fp32, as Megatron's norm tensor); `value` itself when there are none.
    public func sum(_ value: Double, device: Device) throws -> Double {
        guard !groups.isEmpty else { return value }
        return Double(try reduce(Float(value), op: .sum, device: device))
    }

    /// True when `flag` is true on any rank of any group.
    public func anyRank(_ flag: Bool, device: Device) throws -> Bool {
        guard !groups.isEmpty else { return flag }
        return try reduce(flag ? 1 : 0, op: .max, device: device) > 0
    }

    private func reduce(_ value: Float, op: MegatronParallel.ReduceOp, device: Device) throws -> Float {
        let t = Tensor(shape: [1], values: [value]).to(device)
        for group in groups { try group.allReduce(t, op: op).wait() }
        return t.to(.cpu).floats()[0]
    }
}
