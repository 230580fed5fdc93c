import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// The transformer block fuses each residual add into the norm after it (`NormLayer.addNorm`). On the
/// CPU in fp32 that must give the same bits as the unfused pre-norm layer, `h = x + drop(attn(norm(x)))`,
/// `out = h + drop(mlp(norm(h)))`, final norm after the last layer: outputs and every gradient, with
/// hidden dropout on, for both norms, with and without full recomputation of a layer.
final class ResidualNormFusionTests: XCTestCase {
    func testFusedBlockMatchesTheUnfusedLayersBitForBit() throws {
        for normalization in [TransformerConfig.Normalization.layerNorm, .rmsNorm] {
            for recomputed in [Set<Int>(), [1]] {
                try compare(normalization: normalization, recomputed: recomputed)
            }
        }
    }

    private func compare(normalization: TransformerConfig.Normalization, recomputed: Set<Int>) throws {
        let config = try TransformerConfig(numLayers: 3, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32,
                                           normalization: normalization, hiddenDropout: 0.2, attentionDropout: 0.1)
        let dropout = PhiloxGenerator(seed: 7)
        let block = TransformerBlock(config: config, generator: PhiloxGenerator(seed: 5), dropoutGenerator: dropout)
        let input = Tensor.normal([2, 6, 16], generator: PhiloxGenerator(seed: 8))
        let seed = Tensor.normal([2, 6, 16], generator: PhiloxGenerator(seed: 9))
        let start = dropout.offset
        let label = "\(normalization) recomputing \(recomputed)"

        func run(_ forward: (Tensor) -> Tensor) -> [[Float]] {
            dropout.offset = start
            for (_, p) in block.namedParameters() { p.grad = nil }
            var x = input.detached()
            x.requiresGrad = true
            let out = forward(x)
            out.backward(gradient: seed)
            return [out.floats(), x.grad!.floats()] + block.namedParameters().map { $0.1.grad!.floats() }
        }
        block.recomputedLayers = recomputed
        let fused = run { block($0) }
        let unfused = run { x in
            var h = x
            for layer in block.layers {
                let a = h + layer.hiddenDropout(layer.selfAttention(layer.inputLayernorm(h)))
                h = a + layer.hiddenDropout(layer.mlp(layer.preMLPLayernorm(a)))
            }
            return block.finalLayernorm!(h)
        }
        XCTAssertEqual(fused[0], unfused[0], "\(label): output")
        XCTAssertEqual(fused[1], unfused[1], "\(label): input gradient")
        for (i, (name, _)) in block.namedParameters().enumerated() {
            XCTAssertEqual(fused[i + 2], unfused[i + 2], "\(label): gradient of \(name)")
        }
    }
}
