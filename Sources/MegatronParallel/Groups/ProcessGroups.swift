/// The communicators of one rank for every parallel axis, split from the world communicator in Megatron's
/// layout (`parallel_state.initialize_model_parallel`), plus this rank's coordinates.
///
/// Every rank of the world must build it together (each group is one collective `split`).
///
/// ```swift
/// let layout = try ParallelLayout(worldSize: world.size, tensor: 2, pipeline: 2)
/// let groups = try ProcessGroups(layout: layout, world: world)
/// try groups.dataWithContext.allReduce(grads, op: .average).wait()
/// ```
public final class ProcessGroups {
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
    /// Data-parallel group with context parallelism ("dp-cp"): where dense gradients are reduced.
    public let dataWithContext: Communicator
    /// Model-parallel group ("tp-pp").
    public let modelParallel: Communicator
    /// Tensor and context parallel group ("tp-cp").
    public let tensorWithContext: Communicator
    /// The first and last pipeline stages of this rank's pipeline (tied embeddings); nil on middle stages.
    public let embedding: Communicator?
    /// Expert-parallel group ("ep" of the expert grid).
    public let expert: Communicator
    /// Expert tensor-parallel group ("tp" of the expert grid).
    public let expertTensor: Communicator
    /// Expert data-parallel group ("dp" of the expert grid): where expert gradients are reduced.
    public let expertData: Communicator

    /// This rank's coordinate along each dense axis (its rank in the group of that axis).
    public var tensorRank: Int { tensor.rank }
    public var pipelineRank: Int { pipeline.rank }
    public var contextRank: Int { context.rank }
    public var dataRank: Int { data.rank }
    public var expertRank: Int { expert.rank }
    public var isFirstPipelineStage: Bool { pipeline.rank == 0 }
    public var isLastPipelineStage: Bool { pipeline.rank == pipeline.size - 1 }

    public init(layout: ParallelLayout, world: Communicator) throws {
        guard world.size == layout.worldSize else {
            throw ParallelLayoutError("the world communicator has \(world.size) ranks but the layout is for "
                + "\(layout.worldSize)")
        }
        self.layout = layout
        self.world = world
        let dense = layout.dense, experts = layout.expertGrid
        guard dense.groups("pp") == experts.groups("pp") else {
            throw ParallelLayoutError("the dense and expert layouts give different pipeline groups; "
                + "check the expert and expert tensor parallel sizes")
        }
        func split(_ groups: [[Int]]) throws -> Communicator {
            try ProcessGroups.split(world, into: groups)
        }
        tensor = try split(dense.groups("tp"))
        pipeline = try split(dense.groups("pp"))
        context = try split(dense.groups("cp"))
        data = try split(dense.groups("dp"))
        dataWithContext = try split(dense.groups("dp-cp"))
        modelParallel = try split(dense.groups("tp-pp"))
        tensorWithContext = try split(dense.groups("tp-cp"))
        let embeddingGroups = ProcessGroups.embeddingGroups(pipelineGroups: dense.groups("pp"))
        let embeddingGroup = try split(embeddingGroups)
        embedding = embeddingGroups.contains { $0.contains(world.rank) } ? embeddingGroup : nil
        expert = try split(experts.groups("ep"))
        expertTensor = try split(experts.groups("tp"))
        expertData = try split(experts.groups("dp"))
    }

    /// First and last rank of each pipeline group (one rank when PP is 1), as Megatron's default
    /// `get_embedding_ranks`.
    public static func embeddingGroups(pipelineGroups: [[Int]]) -> [[Int]] {
        pipelineGroups.map { $0.count > 1 ? [$0.first!, $0.last!] : [$0[0]] }
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
