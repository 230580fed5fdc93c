/// Which transformer layers each pipeline rank and model chunk builds, by Megatron's rules
/// (`get_num_layers_to_build`, `get_transformer_layer_offset`): an even split, optionally counting the
/// embedding and the loss as one layer each; or uneven first / last stages with the middle stages sharing
/// the rest; each rank's share cut into `virtualStages` chunks for the interleaved schedule.
///
/// ```swift
/// let placement = try PipelineLayerPlacement(layers: 16, stages: 4, virtualStages: 2)
/// placement.layers(rank: 1, chunk: 1)   // 10..<12
/// ```
public struct PipelineLayerPlacement: Equatable, Sendable {
    public let layers: Int
    public let stages: Int
    /// Model chunks per rank (`--num-virtual-stages-per-pipeline-rank`); nil without interleaving.
    public let virtualStages: Int?
    /// `--decoder-first-pipeline-num-layers` / `--decoder-last-pipeline-num-layers`.
    public let firstStageLayers: Int?
    public let lastStageLayers: Int?
    /// `--account-for-embedding-in-pipeline-split` / `--account-for-loss-in-pipeline-split`.
    public let accountForEmbedding: Bool
    public let accountForLoss: Bool

    public init(layers: Int, stages: Int, virtualStages: Int? = nil, firstStageLayers: Int? = nil, lastStageLayers: Int? = nil,
                accountForEmbedding: Bool = false, accountForLoss: Bool = false) throws {
        self.layers = layers
        self.stages = stages
        self.virtualStages = stages > 1 ? virtualStages : nil
        self.firstStageLayers = firstStageLayers
        self.lastStageLayers = lastStageLayers
        self.accountForEmbedding = accountForEmbedding
        self.accountForLoss = accountForLoss
        try validate()
    }

    var isUneven: Bool { firstStageLayers != nil || lastStageLayers != nil }
    var chunkCount: Int { virtualStages ?? 1 }

    /// The layer indices (of the whole model) that `rank`'s chunk `chunk` builds; empty on a stage that only
    /// holds the embedding or the loss.
    public func layers(rank: Int, chunk: Int = 0) -> Range<Int> {
        guard stages > 1 else { return 0..<layers }
        let start = offset(rank: rank, chunk: chunk)
        return start..<(start + count(rank: rank, chunk: chunk))
    }

    /// How many layers a pipeline rank holds in total over its chunks.
    public func layerCount(rank: Int) -> Int {
        (0..<chunkCount).map { layers(rank: rank, chunk: $0).count }.reduce(0, +)
    }

    private var middleStages: Int { stages - (firstStageLayers == nil ? 0 : 1) - (lastStageLayers == nil ? 0 : 1) }
    private var middleLayers: Int { layers - (firstStageLayers ?? 0) - (lastStageLayers ?? 0) }
    /// The layers of the even split, the embedding and the loss counted in when asked.
    private var splitLayers: Int { layers + (accountForEmbedding ? 1 : 0) + (accountForLoss ? 1 : 0) }

    private func rankShare(_ rank: Int) -> Int {
        guard isUneven else { return splitLayers / stages }
        if rank == 0, let first = firstStageLayers { return first }
        if rank == stages - 1, let last = lastStageLayers { return last }
        return middleStages > 0 ? middleLayers / middleStages : 0
    }

    private func count(rank: Int, chunk: Int) -> Int {
        var n = rankShare(rank) / chunkCount
        if accountForEmbedding, rank == 0, chunk == 0 { n -= 1 }
        if accountForLoss, rank == stages - 1, chunk == chunkCount - 1 { n -= 1 }
        return n
    }

    private func offset(rank: Int, chunk: Int) -> Int {
        if isUneven {
            let middleRank = firstStageLayers == nil ? rank : rank - 1
            guard let vp = virtualStages else {
                return rank == 0 ? 0 : middleRank * (middleStages > 0 ? middleLayers / middleStages : 0) + (firstStageLayers ?? 0)
            }
            let firstChunk = (firstStageLayers ?? 0) / vp, lastChunk = (lastStageLayers ?? 0) / vp, middleChunk = middleLayers / vp
            let perChunkRound = firstChunk + middleChunk + lastChunk
            return rank == 0 ? chunk * perChunkRound : chunk * perChunkRound + firstChunk + middleRank * (middleChunk / middleStages)
        }
        let perRank = splitLayers / stages
        var offset = virtualStages.map { vp in chunk * (splitLayers / vp) + rank * (perRank / vp) } ?? rank * perRank
        if accountForEmbedding && !(rank == 0 && chunk == 0) { offset -= 1 }
        return offset
    }

    private func validate() throws {
        func fail(_ message: String) -> PipelineScheduleError { PipelineScheduleError(description: message) }
        guard layers >= 1, stages >= 1 else { throw fail("--num-layers \(layers) cannot be split over \(stages) pipeline stages") }
        guard stages > 1 else { return }
        if let vp = virtualStages, vp < 1 { throw fail("--num-virtual-stages-per-pipeline-rank \(vp) must be at least 1") }
        if isUneven {
            if accountForEmbedding || accountForLoss {
                throw fail("uneven pipeline stages (--decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers) "
                    + "cannot be combined with --account-for-embedding-in-pipeline-split or --account-for-loss-in-pipeline-split")
            }
            guard middleLayers >= 0 else {
                throw fail("--decoder-first-pipeline-num-layers and --decoder-last-pipeline-num-layers take more than the \(layers) layers")
            }
            if middleStages > 0, middleLayers % middleStages != 0 {
                throw fail("with uneven pipeline stages the \(middleLayers) remaining layers must divide evenly over the "
                    + "\(middleStages) middle stages (--num-layers \(layers), --pipeline-model-parallel-size \(stages))")
            }
            if middleStages == 0, middleLayers != 0 {
                throw fail("--decoder-first-pipeline-num-layers and --decoder-last-pipeline-num-layers must add up to "
                    + "--num-layers \(layers) with \(stages) pipeline stages")
            }
        } else if splitLayers % stages != 0 {
            let counted = accountForEmbedding || accountForLoss ? " (the embedding / loss counted as layers: \(splitLayers))" : ""
            throw fail("--num-layers \(layers)\(counted) is not divisible by --pipeline-model-parallel-size \(stages)")
        }
        if let vp = virtualStages {
            for rank in 0..<stages where rankShare(rank) % vp != 0 {
                throw fail("pipeline rank \(rank)'s \(rankShare(rank)) layers do not divide into \(vp) virtual stages "
                    + "(--num-layers-per-virtual-pipeline-stage / --num-virtual-stages-per-pipeline-rank)")
            }
        }
        for rank in 0..<stages {
            for chunk in 0..<chunkCount where count(rank: rank, chunk: chunk) < 0 {
                throw fail("pipeline rank \(rank) chunk \(chunk) has no layer left for the embedding or loss it accounts for")
            }
        }
    }
}
