/// Which part of a GPT model one pipeline rank's model chunk holds (Megatron's `pre_process` /
/// `post_process` and the layers of `get_num_layers_to_build`): the first stage the embeddings, each stage
/// its decoder layers, the last stage the final norm, the output layer and the loss.
///
/// ```swift
/// let placement = try PipelineLayerPlacement(layers: 8, stages: 2)
/// let stage = GPTModelStage(placement: placement, rank: 1)   // layers 4..<8, postProcess
/// let model = try GPTModel(config: config, vocabSize: 256, maxSequenceLength: 64, tensorParallel: .single, stage: stage)
/// ```
public struct GPTModelStage: Equatable, Sendable {
    /// The decoder layers (indices in the whole model) of each model chunk this rank holds, in chunk order:
    /// one chunk without interleaving, one per virtual pipeline stage with it.
    public var chunks: [Range<Int>]
    /// Whether the stage starts the model: its first chunk embeds the tokens.
    public var preProcess: Bool
    /// Whether the stage ends the model: its last chunk holds the final norm, the output layer and the loss.
    public var postProcess: Bool

    /// A stage of one model chunk.
    public init(layers: Range<Int>, preProcess: Bool, postProcess: Bool) {
        self.init(chunks: [layers], preProcess: preProcess, postProcess: postProcess)
    }

    public init(chunks: [Range<Int>], preProcess: Bool, postProcess: Bool) {
        self.chunks = chunks
        self.preProcess = preProcess
        self.postProcess = postProcess
    }

    /// The whole model of `layers` layers (no pipelining).
    public static func whole(layers: Int) -> GPTModelStage {
        GPTModelStage(layers: 0..<layers, preProcess: true, postProcess: true)
    }

    /// Pipeline rank `rank`'s model chunks under `placement`: one per virtual pipeline stage, the embedding
    /// in rank 0's first chunk and the loss in the last rank's last chunk, as Megatron places them.
    public init(placement: PipelineLayerPlacement, rank: Int) {
        self.init(chunks: (0..<placement.chunkCount).map { placement.layers(rank: rank, chunk: $0) },
                  preProcess: rank == 0, postProcess: rank == placement.stages - 1)
    }

    /// Every decoder layer (index in the whole model) this rank holds, in chunk order.
    public var layers: [Int] { chunks.flatMap { Array($0) } }

    /// Positions in `layers` of chunk `chunk`'s layers.
    public func positions(ofChunk chunk: Int) -> Range<Int> {
        let start = chunks[..<chunk].map(\.count).reduce(0, +)
        return start..<(start + chunks[chunk].count)
    }

    /// Whether chunk `chunk` embeds the tokens (the first chunk of the first stage).
    public func embeds(inChunk chunk: Int) -> Bool { preProcess && chunk == 0 }

    /// Whether chunk `chunk` ends the model (the last chunk of the last stage).
    public func computesLoss(inChunk chunk: Int) -> Bool { postProcess && chunk == chunks.count - 1 }

    /// Whether this is the whole model.
    public var isWhole: Bool { preProcess && postProcess && chunks.count == 1 }
}
