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
    /// The decoder layers (indices in the whole model) this stage builds.
    public var layers: Range<Int>
    /// Whether the stage starts the model: it embeds the tokens.
    public var preProcess: Bool
    /// Whether the stage ends the model: final norm, output layer and loss.
    public var postProcess: Bool

    public init(layers: Range<Int>, preProcess: Bool, postProcess: Bool) {
        self.layers = layers
        self.preProcess = preProcess
        self.postProcess = postProcess
    }

    /// The whole model of `layers` layers (no pipelining).
    public static func whole(layers: Int) -> GPTModelStage {
        GPTModelStage(layers: 0..<layers, preProcess: true, postProcess: true)
    }

    /// Pipeline rank `rank`'s model chunk `chunk` under `placement`.
    public init(placement: PipelineLayerPlacement, rank: Int, chunk: Int = 0) {
        self.init(layers: placement.layers(rank: rank, chunk: chunk),
                  preProcess: rank == 0 && chunk == 0,
                  postProcess: rank == placement.stages - 1 && chunk == placement.chunkCount - 1)
    }

    /// Whether this is the whole model.
    public var isWhole: Bool { preProcess && postProcess }
}
