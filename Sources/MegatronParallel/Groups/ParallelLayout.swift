/// The sizes of the parallel axes for a world of `worldSize` ranks, validated: tensor (TP), pipeline (PP),
/// context (CP), expert (EP) and expert-tensor (ETP) parallelism; data parallelism takes what is left.
///
/// ```swift
/// let layout = try ParallelLayout(worldSize: 16, tensor: 2, pipeline: 2, context: 2)
/// layout.data                                  // 2
/// layout.dense.groups("tp")                    // [[0, 1], [2, 3], ...]
/// ```
public struct ParallelLayout: Sendable, Equatable {
    public let worldSize: Int
    public let tensor: Int
    public let pipeline: Int
    public let context: Int
    public let expert: Int
    public let expertTensor: Int
    /// Megatron's `order` argument: "tp-cp-ep-dp-pp" (default) or "tp-cp-ep-pp-dp" (--use-tp-pp-dp-mapping).
    public let order: String
    /// The grid of the dense layers (EP is 1 there).
    public let dense: RankGenerator
    /// The grid of the expert layers: "tp" is the expert-tensor axis, "dp" the expert-data axis (CP is 1 there).
    public let expertGrid: RankGenerator

    /// Data-parallel size of the dense layers: world / (TP·PP·CP).
    public var data: Int { worldSize / (tensor * pipeline * context) }
    /// Data-parallel size of the expert layers: world / (ETP·EP·PP).
    public var expertData: Int { worldSize / (expertTensor * expert * pipeline) }

    /// `expertTensor` defaults to `tensor`, as Megatron's `--expert-tensor-parallel-size` does.
    public init(worldSize: Int, tensor: Int = 1, pipeline: Int = 1, context: Int = 1, expert: Int = 1,
                expertTensor: Int? = nil, order: String = "tp-cp-ep-dp-pp") throws {
        let expertTensor = expertTensor ?? tensor
        for (name, size) in [("world", worldSize), ("tensor", tensor), ("pipeline", pipeline), ("context", context),
                             ("expert", expert), ("expert tensor", expertTensor)] where size < 1 {
            throw ParallelLayoutError("\(name) parallel size must be at least 1, got \(size)")
        }
        guard worldSize % (tensor * pipeline * context) == 0 else {
            throw ParallelLayoutError("world size \(worldSize) is not divisible by tensor \(tensor) × pipeline "
                + "\(pipeline) × context \(context) = \(tensor * pipeline * context)")
        }
        guard worldSize % (expertTensor * expert * pipeline) == 0 else {
            throw ParallelLayoutError("world size \(worldSize) is not divisible by expert tensor \(expertTensor) × "
                + "expert \(expert) × pipeline \(pipeline) = \(expertTensor * expert * pipeline)")
        }
        self.worldSize = worldSize
        self.tensor = tensor
        self.pipeline = pipeline
        self.context = context
        self.expert = expert
        self.expertTensor = expertTensor
        self.order = order
        let data = worldSize / (tensor * pipeline * context)
        dense = try RankGenerator(sizes: ["tp": tensor, "cp": context, "ep": 1, "dp": data, "pp": pipeline],
                                  order: order)
        let expertData = worldSize / (expertTensor * expert * pipeline)
        expertGrid = try RankGenerator(sizes: ["tp": expertTensor, "cp": 1, "ep": expert, "dp": expertData,
                                               "pp": pipeline], order: order)
    }
}
