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
/// let stats = GradientStatsGroups(state, duplicatedParameters: ["decoder.final_layernorm.weight"])
/// let (squares, nonFinite) = try stats.reduce(squares: localSumOfSquares, nonFinite: false, device: .cpu)
/// let total = squares.squareRoot()
/// ```
public struct GradientStatsGroups {
    public var groups: [Communicator]
    public var tensorParallelRank: Int
    /// Names of parameters whose gradients are the same on every tensor-parallel rank.
    public var duplicatedParameters: Set<String>
    /// Names of parameters this rank holds as a copy of another pipeline stage's (the tied embeddings on the
    /// last stage), which count on the stage that owns them only (Megatron's `param_is_not_shared`).
    public var pipelineCopies: Set<String> = []
    /// With expert parallelism: the expert parameters' names, and whether this rank's dense and expert
    /// gradients count (not where another data-parallel rank holds the same ones). `groups` then spans every
    /// rank (the world), so experts on other expert-parallel ranks count, and the data-parallel group is in it.
    public var expertParameters: Set<String> = []
    public var countsDense = true, countsExperts = true
    /// `groups` already reaches every data-parallel rank (the distributed optimizer adds none).
    public var spansDataParallel = false

    public init(groups: [Communicator] = [], tensorParallelRank: Int = 0, duplicatedParameters: Set<String> = []) {
        self.groups = groups
        self.tensorParallelRank = tensorParallelRank
        self.duplicatedParameters = duplicatedParameters
    }

    /// The groups of a model's gradient norm under `state`: its model-parallel group (Megatron's
    /// `get_model_parallel_group`; the distributed optimizer adds its data-parallel group), where that group
    /// spans more than this rank.
    public init(_ state: ParallelState, duplicatedParameters: Set<String> = []) {
        self.init(groups: state.modelParallel.size > 1 ? [state.modelParallel] : [], tensorParallelRank: state.tensorRank,
                  duplicatedParameters: duplicatedParameters)
    }

    /// Whether parameter `name`'s gradient enters this rank's share of the norm.
    public func countsInNorm(_ name: String) -> Bool {
        !pipelineCopies.contains(name) && (tensorParallelRank == 0 || !duplicatedParameters.contains(name))
            && (expertParameters.contains(name) ? countsExperts : countsDense)
    }

    /// This rank's share of the squared norm summed, and its inf/NaN flag OR-ed, over every group: one
    /// collective per group (in fp32, as Megatron's norm tensor). The sum means nothing where the flag is set.
    public func reduce(squares: Double, nonFinite: Bool, device: Device) throws -> (squares: Double, nonFinite: Bool) {
        guard !groups.isEmpty else { return (squares, nonFinite) }
        // The flag travels as a count: summed over the ranks, it is nonzero where any rank set it.
        let t = Tensor(shape: [2], values: [Float(squares), nonFinite ? 1 : 0]).to(device)
        for group in groups { try group.allReduce(t, op: .sum).wait() }
        let both = t.to(.cpu).floats()
        return (Double(both[0]), both[1] > 0)
    }

    /// `count` summed over every group (in Int64, one collective per group): a statistic such as the number of
    /// zero gradients, each rank's share counted as `countsInNorm` says.
    public func sum(count: Int, device: Device) throws -> Int {
        guard !groups.isEmpty else { return count }
        let t = Tensor(shape: [1], ints: [count]).to(device)
        for group in groups { try group.allReduce(t, op: .sum).wait() }
        return t.to(.cpu).ints()[0]
    }
}

extension GradientStatsGroups {
    /// Counts `experts` as Megatron's expert optimizer does under expert parallelism: the squares sum over
    /// every rank; dense gradients count on data-parallel rank 0 and expert gradients on expert-data-parallel
    /// rank 0 (every rank when `sharded`: the distributed optimizer's shards differ); experts repeated whole
    /// over the tensor-parallel group (expert-tensor-parallel size = TP) count on its rank 0, the others everywhere.
    mutating func expertParallel(_ state: ParallelState, experts: Set<String>, sharded: Bool) {
        groups = state.world.size > 1 ? [state.world] : []
        spansDataParallel = true
        expertParameters = experts
        countsDense = sharded || state.dataWithContext.rank == 0
        countsExperts = sharded || state.expertData.rank == 0
        if state.expertTensor.size == 1 { duplicatedParameters.subtract(experts) }
    }
}
