import MegatronTensor

/// Where one tensor-parallel rank's parameters lie in a GPT model's torch_dist checkpoint: each parameter's key,
/// its global shape (the single-rank one, layers stacked) and, for any box of the rank's local tensor, the boxes of
/// the global tensor it is. Saving writes those boxes; loading reads them back at whatever layout saved them.
/// A pipeline stage's layers keep their global numbers, so every pipeline layout writes the single-rank checkpoint.
///
/// ```swift
/// let layout = try ShardedGPTLayout(model: model, tensorRank: 1, tensorSize: 2)
/// let w = "decoder.layers.0.mlp.linear_fc2.weight"
/// layout.pieces(of: w, localBox: ShardBox(whole: localShape))   // [(local box, [0, 0, 64] + ...)]
/// ```
public struct ShardedGPTLayout {
    public let tensorRank: Int
    public let tensorSize: Int
    let numLayers: Int
    let shardings: [String: TensorParallelSharding]
    let localShapes: [String: [Int]]
    let placements: [String: MegatronGPTLayout.Placement]
    let parameterShapes: [String: [Int]]
    /// Parameters this rank holds as a copy of another stage's, which that stage writes: the last stage's word
    /// embeddings when the output layer is tied to them (Megatron saves them once, from the first stage).
    let copiesOfOtherStages: Set<String>

    public init(model: GPTModel, tensorRank: Int, tensorSize: Int) throws {
        (self.tensorRank, self.tensorSize, numLayers) = (tensorRank, tensorSize, model.config.numLayers)
        shardings = model.tensorParallelShardings()
        localShapes = Dictionary((model.namedParameters() + model.checkpointBuffers()).map { ($0.0, $0.1.shape) },
                                 uniquingKeysWith: { a, _ in a })
        var global: [String: [Int]] = [:]
        for (name, shape) in localShapes {
            var shape = shape
            if let dim = shardings[name]?.splitDimension { shape[dim] *= tensorSize }
            global[name] = shape
        }
        parameterShapes = global
        placements = try MegatronGPTLayout.placements(global, numLayers: numLayers, numExperts: model.config.moe?.numExperts,
                                                      homogeneous: model.stage.isWhole ? nil : Self.layersAlike(model.config))
        copiesOfOtherStages = model.stage.preProcess || model.wordEmbeddings == nil ? [] : ["embedding.word_embeddings.weight"]
    }

    /// Whether every layer of a `config` model has the same parameters (no mixture-of-experts or Gated DeltaNet
    /// layers among other kinds), as `MegatronGPTLayout.placements` decides from a whole model's shapes.
    static func layersAlike(_ config: TransformerConfig) -> Bool {
        Set((0..<config.numLayers).map { [config.isMoELayer($0), config.isGatedDeltaNetLayer($0)] }).count <= 1
    }

    /// The parameters (and checkpoint buffers: the expert bias) of this rank, by name.
    public var parameterNames: [String] { localShapes.keys.sorted() }

    /// Whether every tensor-parallel rank holds parameter `name` whole (one of them writes it).
    public func isDuplicated(_ name: String) -> Bool { (shardings[name] ?? .duplicated) == .duplicated }

    /// Whether this rank writes its boxes of parameter `name` (and of its optimizer state), given that its data-parallel
    /// replica group writes it: the first tensor-parallel rank writes a duplicated parameter, and the stage owning a
    /// tied copy writes it, not the copy's.
    public func writes(_ name: String) -> Bool {
        (tensorRank == 0 || !isDuplicated(name)) && !copiesOfOtherStages.contains(name)
    }

    /// The torch_dist key of parameter `name`.
    public func key(of name: String) -> String { placements[name]!.key }

    /// The Transformer Engine spec's key for parameter `name` where it differs (`MegatronGPTLayout.Placement.alias`).
    public func alias(of name: String) -> String? { placements[name]!.alias }

    /// The global shape of `name`'s torch_dist tensor (`[numLayers] + shape` when stacked, `[numExperts]` further
    /// prepended for a routed expert's weight).
    public func globalShape(of name: String) -> [Int] { placements[name]!.leadingShape + parameterShapes[name]! }

    /// The parts of `localBox` (a box of this rank's tensor of `name`) and the global boxes they are: one, or one per
    /// section a sectioned parameter's box spans. A stacked parameter's global box has the layer axis (length 1)
    /// in front, an expert's the expert axis (length 1) after it.
    public func pieces(of name: String, localBox: ShardBox) -> [(local: ShardBox, global: ShardBox)] {
        let local = localShapes[name]!
        var pieces: [(local: ShardBox, global: ShardBox)]
        switch shardings[name] ?? .duplicated {
        case .duplicated:
            pieces = [(localBox, localBox)]
        case .split(let dim):
            var global = localBox
            global.offsets[dim] += tensorRank * local[dim]
            pieces = [(localBox, global)]
        case .splitHalves(let dim):
            pieces = sectioned(localBox, dim: dim, localLengths: [local[dim] / 2, local[dim] / 2])
        case .splitSections(let dim, let lengths):
            pieces = sectioned(localBox, dim: dim, localLengths: lengths.map { $0 / tensorSize })
        }
        let leading = placements[name]!.leading
        return pieces.map { ($0.local, ShardBox(offsets: leading + $0.global.offsets, sizes: leading.map { _ in 1 } + $0.global.sizes)) }
    }

    /// `box` cut at the local section boundaries along `dim`; section s of rank r lies at the section's global
    /// start plus r blocks.
    private func sectioned(_ box: ShardBox, dim: Int, localLengths: [Int]) -> [(local: ShardBox, global: ShardBox)] {
        var pieces: [(local: ShardBox, global: ShardBox)] = []
        var (localStart, globalStart) = (0, 0)
        for length in localLengths {
            defer { (localStart, globalStart) = (localStart + length, globalStart + length * tensorSize) }
            let start = max(box.offsets[dim], localStart), end = min(box.offsets[dim] + box.sizes[dim], localStart + length)
            guard end > start else { continue }
            var local = box
            (local.offsets[dim], local.sizes[dim]) = (start, end - start)
            var global = local
            global.offsets[dim] = globalStart + tensorRank * length + (start - localStart)
            pieces.append((local, global))
        }
        return pieces
    }
}

extension TensorParallelSharding {
    /// The dimension split over the ranks, nil when every rank holds the whole parameter.
    var splitDimension: Int? {
        switch self {
        case .duplicated: nil
        case .split(let dim), .splitHalves(let dim), .splitSections(let dim, _): dim
        }
    }
}
