/// The parallel state of one rank: its communicator for every parallel axis and for the axis combinations
/// Megatron uses, split once from the world communicator in Megatron's rank layout
/// (`parallel_state.initialize_model_parallel`, torchtitan's `ParallelDims`), and this rank's coordinates.
///
/// Every other part of a run takes its groups from here. An axis of size 1 gets a `SingleRankCommunicator`
/// (no collective split, no backend), so code may use every group unconditionally; `size > 1` says whether
/// an axis is really split. Groups with the same ranks share one communicator (at PP = 1 the model-parallel
/// group is the tensor-parallel one). Every rank of the world must build it together: each split is a
/// collective.
///
/// ```swift
/// let layout = try ParallelLayout(worldSize: world.size, tensor: 2, pipeline: 2)
/// let state = try ParallelState(layout: layout, world: world)
/// try state.dataWithContext.allReduce(grads, op: .average).wait()
/// if state.isLastPipelineStage { ... }
/// ```
public final class ParallelState {
    public let layout: ParallelLayout
    public let world: Communicator
    /// Tensor-parallel group ("tp").
    public let tensor: Communicator
    /// Pipeline-parallel group ("pp"): the stages of one model replica, in stage order.
    public let pipeline: Communicator
    /// Context-parallel group ("cp").
    public let context: Communicator
    /// Data-parallel group without context parallelism ("dp").
    public let data: Communicator
    /// Data-parallel group with context parallelism ("dp-cp"): where dense gradients are reduced and the
    /// training loss is totalled.
    public let dataWithContext: Communicator
    /// Model-parallel group ("tp-pp"): the ranks holding one model replica; a gradient norm spans it.
    public let modelParallel: Communicator
    /// Tensor and context parallel group ("tp-cp").
    public let tensorWithContext: Communicator
    /// Tensor and data parallel group ("tp-dp"): the ranks of one pipeline stage.
    public let tensorWithData: Communicator
    /// Tensor, data and context parallel group ("tp-dp-cp").
    public let tensorWithDataAndContext: Communicator
    /// The first and last stages of this rank's pipeline (tied embeddings' gradients); nil on middle stages.
    public let embedding: Communicator?
    /// Expert-parallel group ("ep" of the expert grid).
    public let expert: Communicator
    /// Expert tensor-parallel group ("tp" of the expert grid).
    public let expertTensor: Communicator
    /// Expert data-parallel group ("dp" of the expert grid): where expert gradients are reduced.
    public let expertData: Communicator

    /// This rank's coordinate along each axis (its rank in the group of that axis).
    public var tensorRank: Int { tensor.rank }
    public var pipelineRank: Int { pipeline.rank }
    public var contextRank: Int { context.rank }
    public var dataRank: Int { data.rank }
    public var expertRank: Int { expert.rank }
    /// Whether this rank runs the first pipeline stage (the embedding); true without pipelining.
    public var isFirstPipelineStage: Bool { pipeline.rank == 0 }
    /// Whether this rank runs the last pipeline stage (the output layer and the loss); true without pipelining.
    public var isLastPipelineStage: Bool { pipeline.rank == pipeline.size - 1 }

    /// The state of a job of one rank: every group is the rank alone.
    public static func singleRank() -> ParallelState {
        // A world of one fits every layout of size 1; neither step can fail.
        try! ParallelState(layout: ParallelLayout(worldSize: 1), world: SingleRankCommunicator())
    }

    /// Splits `world` into the groups of `layout`; throws when the world's size is not the layout's or the
    /// dense and expert grids disagree on the pipeline.
    public init(layout: ParallelLayout, world: Communicator) throws {
        guard world.size == layout.worldSize else {
            throw ParallelLayoutError("the world communicator has \(world.size) ranks but the layout is for "
                + "\(layout.worldSize)")
        }
        let dense = layout.dense, experts = layout.expertGrid
        guard dense.groups("pp") == experts.groups("pp") else {
            throw ParallelLayoutError("the dense and expert layouts give different pipeline groups; "
                + "check the expert and expert tensor parallel sizes")
        }
        self.layout = layout
        self.world = world
        var splitter = GroupSplitter(world: world)
        tensor = try splitter.group(dense.groups("tp"))
        pipeline = try splitter.group(dense.groups("pp"))
        context = try splitter.group(dense.groups("cp"))
        data = try splitter.group(dense.groups("dp"))
        dataWithContext = try splitter.group(dense.groups("dp-cp"))
        modelParallel = try splitter.group(dense.groups("tp-pp"))
        tensorWithContext = try splitter.group(dense.groups("tp-cp"))
        tensorWithData = try splitter.group(dense.groups("tp-dp"))
        tensorWithDataAndContext = try splitter.group(dense.groups("tp-dp-cp"))
        let embeddingGroups = ParallelState.embeddingGroups(pipelineGroups: dense.groups("pp"))
        let embeddingGroup = try splitter.group(embeddingGroups)
        embedding = embeddingGroups.contains { $0.contains(world.rank) } ? embeddingGroup : nil
        expert = try splitter.group(experts.groups("ep"))
        expertTensor = try splitter.group(experts.groups("tp"))
        expertData = try splitter.group(experts.groups("dp"))
    }

    /// First and last rank of each pipeline group (one rank when PP is 1), as Megatron's default
    /// `get_embedding_ranks`.
    public static func embeddingGroups(pipelineGroups: [[Int]]) -> [[Int]] {
        pipelineGroups.map { $0.count > 1 ? [$0.first!, $0.last!] : [$0[0]] }
    }
}

/// Splits the world into rank groups, once per distinct grouping: groups of one rank need no split, and a
/// grouping asked for again (the same ranks under another axis name) returns the communicator already made.
struct GroupSplitter {
    let world: Communicator
    private var made: [[[Int]]: Communicator] = [:]

    init(world: Communicator) { self.world = world }

    /// This rank's communicator of `groups` (each listing world ranks in group order). Every rank calls it with
    /// the same groups, so every rank splits or skips alike.
    mutating func group(_ groups: [[Int]]) throws -> Communicator {
        if let known = made[groups] { return known }
        let communicator: Communicator
        if groups.allSatisfy({ $0.count == 1 }) {
            communicator = SingleRankCommunicator()
        } else if groups.count == 1 && groups[0] == Array(0..<world.size) {
            communicator = world
        } else {
            communicator = try GroupSplitter.split(world, into: groups)
        }
        made[groups] = communicator
        return communicator
    }

    /// Splits `world` so that each rank lands in the group listing it, ordered as listed. Ranks in no group
    /// get a group of their own (the protocol's `split` has no "no color"), which the caller discards.
    static func split(_ world: Communicator, into groups: [[Int]]) throws -> Communicator {
        if let index = groups.firstIndex(where: { $0.contains(world.rank) }) {
            return try world.split(color: index, key: groups[index].firstIndex(of: world.rank)!)
        }
        return try world.split(color: groups.count + world.rank, key: 0)
    }
}
