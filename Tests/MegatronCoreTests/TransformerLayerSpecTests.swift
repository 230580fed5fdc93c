import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// Layers built from specs: the config's patterns become per-layer specs, and a new feed-forward or mixer is a
/// new spec value the layer builds without knowing it.
final class TransformerLayerSpecTests: XCTestCase {
    /// `--linear-attention-freq` and `--window-attn-skip-freq` choose each layer's mixer and window.
    func testGPTBlockSpecFollowsTheConfigsLayerPatterns() throws {
        let config = try TransformerConfig(
            numLayers: 4, hiddenSize: 32, numAttentionHeads: 4, ffnHiddenSize: 48, gatedLinearUnit: true,
            activation: .silu, positionEmbeddingType: .rope,
            gatedDeltaNet: GatedDeltaNetConfig(layers: [true, false, false, true], convKernelDim: 4, keyHeadDim: 8,
                                               valueHeadDim: 8, numKeyHeads: 2, numValueHeads: 4),
            slidingWindow: 5, windowAttnSkipFreq: .frequency(2))
        let model = GPTModel(config: config, vocabSize: 32, maxSequenceLength: 16)
        let mixers = model.decoder.layers.map { layer -> String in
            if let attention = layer.attention { return attention.window.map { "window \($0)" } ?? "full" }
            return layer.selfAttention is GatedDeltaNet ? "gdn" : "other"
        }
        XCTAssertEqual(mixers, ["gdn", "full", "window 5", "gdn"])
    }

    /// A feed-forward block the layer has never heard of fills the MLP slot of one layer; its parameters take
    /// the slot's name and it runs in the layer's forward.
    func testANewFeedForwardIsANewSpecValue() throws {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32)
        var spec = TransformerBlockSpec.gpt(config)
        spec.layers[1].mlp = ModuleSpec { ScaledIdentity(dimension: $0.config.hiddenSize) }
        let model = try GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8, tensorParallel: .single, decoderSpec: spec)
        let names = model.namedParameters().map(\.0)
        XCTAssertTrue(names.contains("decoder.layers.1.mlp.scale"))
        XCTAssertFalse(names.contains("decoder.layers.1.mlp.linear_fc1.weight"))
        XCTAssertTrue(names.contains("decoder.layers.0.mlp.linear_fc1.weight"))
        let custom = try XCTUnwrap(model.decoder.layers[1].mlp as? ScaledIdentity)
        let loss = model.loss(tokens: Tensor(shape: [1, 4], ints: [1, 2, 3, 4]), labels: Tensor(shape: [1, 4], ints: [2, 3, 4, 5]))
        loss.sum().backward()
        XCTAssertNotNil(custom.scale.grad, "the custom block took part in the forward")
        // Its spec travels with the model: the tensor-parallel resharding rebuilds the same layers.
        let resharded = try model.tensorParallelShard(for: .single)
        XCTAssertTrue(resharded.decoder.layers[1].mlp is ScaledIdentity)
    }

    func testADecoderSpecOfTheWrongLengthIsRefused() throws {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32)
        var spec = TransformerBlockSpec.gpt(config)
        spec.layers.removeLast()
        XCTAssertThrowsError(try GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8, tensorParallel: .single,
                                          decoderSpec: spec)) {
            XCTAssertEqual(($0 as? ConfigError)?.description, "the decoder spec lists 1 layers but num_layers is 2")
        }
    }
}

/// `x * scale`, one learned scale per hidden channel: a feed-forward block only this test knows.
private final class ScaledIdentity: Module, FeedForward {
    let scale: Tensor

    init(dimension: Int) {
        scale = parameter(Tensor.ones([dimension]))
    }

    override var parameters: [(String, Tensor)] { [("scale", scale)] }

    func callAsFunction(_ x: Tensor) -> Tensor { runForward { x * scale } }
}
