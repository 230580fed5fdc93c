import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// GPT variants selected by Megatron's model flags against a plain-PyTorch model written from Megatron's
/// semantics (fixtures from scripts/fixtures/make_model_feature_golden.py): logits, loss and every gradient.
/// They cover zero-centred norms (`--apply-layernorm-1p`, LayerNorm and RMSNorm, q/k norms included),
/// squared ReLU, the exact erf GeLU, RoPE on part of the channels, and `--kv-channels` unequal to
/// hidden / heads (the QKV and output projections' shapes), and a Gated DeltaNet + gated attention hybrid.
final class ModelFeatureGoldenTests: XCTestCase {
    static let layerNorm1pRoPESquaredReLU = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 2, kvChannels: 12, ffnHiddenSize: 48,
        activation: .squaredRelu, hiddenDropout: 0, attentionDropout: 0, positionEmbeddingType: .rope,
        rotaryPercent: 0.5, layernormZeroCenteredGamma: true)
    static let rmsNorm1pQKNormGeluErf = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, kvChannels: 16, ffnHiddenSize: 48, normalization: .rmsNorm,
        activation: .geluExact, addBiasLinear: false, qkLayernorm: true, hiddenDropout: 0, attentionDropout: 0,
        layernormZeroCenteredGamma: true)

    /// Layer 0 Gated DeltaNet, layer 1 attention with the output gate (scripts/fixtures/make_gated_delta_net_golden.py).
    static let hybridGatedDeltaNet = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 2, kvChannels: 8, ffnHiddenSize: 48,
        gatedLinearUnit: true, activation: .silu, addBiasLinear: false, hiddenDropout: 0, attentionDropout: 0,
        positionEmbeddingType: .rope, rotaryPercent: 0.5, layernormZeroCenteredGamma: true, attentionOutputGate: true,
        gatedDeltaNet: GatedDeltaNetConfig(layers: [true, false], convKernelDim: 4, keyHeadDim: 8, valueHeadDim: 6,
                                           numKeyHeads: 2, numValueHeads: 4))

    func testGatedDeltaNetAndOutputGateMatchPyTorch() throws {
        try compare("hybrid_gdn_gated_attention", config: Self.hybridGatedDeltaNet, untied: true)
    }

    /// `--recompute-modules gdn_norm_out core_attn`: the same gradients from recomputed activations.
    func testRecomputedGatedDeltaNetNormGivesTheSameGradients() throws {
        try compare("hybrid_gdn_gated_attention", config: Self.hybridGatedDeltaNet, untied: true,
                    recomputing: [.gdnNormOut, .coreAttention])
    }

    func testLayerNorm1pPartialRoPESquaredReLUAndWideHeadsMatchPyTorch() throws {
        try compare("layernorm1p_rope_squared_relu", config: Self.layerNorm1pRoPESquaredReLU, untied: true)
    }

    func testRMSNorm1pWithQKNormAndExactGeLUMatchPyTorch() throws {
        try compare("rmsnorm1p_qknorm_gelu_erf", config: Self.rmsNorm1pQKNormGeluErf, untied: false)
    }

    /// Both on the GPU (fp32): the squared-ReLU and erf-GeLU kernels, the norms' `1 + w`, partial RoPE.
    func testVariantsMatchPyTorchOnTheGPU() throws {
        try requireGPU("GPU golden test")
        try compare("layernorm1p_rope_squared_relu", config: Self.layerNorm1pRoPESquaredReLU, untied: true,
                    device: .cuda(0), tolerance: 1e-4)
        try compare("rmsnorm1p_qknorm_gelu_erf", config: Self.rmsNorm1pQKNormGeluErf, untied: false,
                    device: .cuda(0), tolerance: 1e-4)
        try compare("hybrid_gdn_gated_attention", config: Self.hybridGatedDeltaNet, untied: true,
                    device: .cuda(0), tolerance: 1e-4)
    }

    func compare(_ name: String, config: TransformerConfig, untied: Bool, device: Device = .cpu, tolerance: Float = 1e-5,
                 recomputing: Set<RecomputedModule> = [], directory: String = "model_features",
                 file: StaticString = #filePath, line: UInt = #line) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(directory)/\(name).safetensors")
        let golden = try SafeTensors.read(url).tensors
        let model = onDevice(device) {
            GPTModel(config: config, vocabSize: 64, maxSequenceLength: 10, untieEmbeddingsAndOutputWeights: untied)
        }
        var state: [String: Tensor] = [:]
        for (key, t) in golden where key.hasPrefix("param.") { state[String(key.dropFirst(6))] = t }
        try model.loadStateDict(state)
        model.decoder.recomputedModules = recomputing

        let logits = model(golden["input_ids"]!.to(device))
        assertScaledClose(logits.floats(), golden["logits"]!.floats(), tolerance: tolerance, "\(name) logits", file: file, line: line)
        let loss = Functional.crossEntropy(logits, labels: golden["labels"]!.to(device)).mean()
        XCTAssertEqual(loss.item(), golden["loss"]!.item(), accuracy: tolerance * golden["loss"]!.item(), name, file: file, line: line)
        loss.backward()
        for (key, parameter) in model.namedParameters() {
            assertScaledClose(parameter.grad!.floats(), golden["grad." + key]!.floats(), tolerance: tolerance, "\(name) grad \(key)",
                        file: file, line: line)
        }
    }
}
