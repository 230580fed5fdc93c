import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// GPT variants selected by Megatron's model flags against a plain-PyTorch model written from Megatron's
/// semantics (fixtures from scripts/fixtures/make_model_feature_golden.py): logits, loss and every gradient.
/// They cover zero-centred norms (`--apply-layernorm-1p`, LayerNorm and RMSNorm, q/k norms included),
/// squared ReLU, the exact erf GeLU, RoPE on part of the channels, and `--kv-channels` unequal to
/// hidden / heads (the QKV and output projections' shapes).
final class ModelFeatureGoldenTests: XCTestCase {
    static let layerNorm1pRoPESquaredReLU = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 2, kvChannels: 12, ffnHiddenSize: 48,
        activation: .squaredRelu, hiddenDropout: 0, attentionDropout: 0, positionEmbeddingType: .rope,
        rotaryPercent: 0.5, layernormZeroCenteredGamma: true)
    static let rmsNorm1pQKNormGeluErf = try! TransformerConfig(
        numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, kvChannels: 16, ffnHiddenSize: 48, normalization: .rmsNorm,
        activation: .geluExact, addBiasLinear: false, qkLayernorm: true, hiddenDropout: 0, attentionDropout: 0,
        layernormZeroCenteredGamma: true)

    func testLayerNorm1pPartialRoPESquaredReLUAndWideHeadsMatchPyTorch() throws {
        try compare("layernorm1p_rope_squared_relu", config: Self.layerNorm1pRoPESquaredReLU, untied: true)
    }

    func testRMSNorm1pWithQKNormAndExactGeLUMatchPyTorch() throws {
        try compare("rmsnorm1p_qknorm_gelu_erf", config: Self.rmsNorm1pQKNormGeluErf, untied: false)
    }

    /// Both on the GPU (fp32): the squared-ReLU and erf-GeLU kernels, the norms' `1 + w`, partial RoPE.
    func testVariantsMatchPyTorchOnTheGPU() throws {
        do {
            _ = try CUDAContext.shared(ordinal: 0)
        } catch {
            throw XCTSkip("no usable CUDA device here, GPU golden test skipped: \(error)")
        }
        try compare("layernorm1p_rope_squared_relu", config: Self.layerNorm1pRoPESquaredReLU, untied: true,
                    device: .cuda(0), tolerance: 1e-4)
        try compare("rmsnorm1p_qknorm_gelu_erf", config: Self.rmsNorm1pQKNormGeluErf, untied: false,
                    device: .cuda(0), tolerance: 1e-4)
    }

    func compare(_ name: String, config: TransformerConfig, untied: Bool, device: Device = .cpu, tolerance: Float = 1e-5,
                 directory: String = "model_features", file: StaticString = #filePath, line: UInt = #line) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(directory)/\(name).safetensors")
        let golden = try SafeTensors.read(url).tensors
        let model = onDevice(device) {
            GPTModel(config: config, vocabSize: 64, maxSequenceLength: 10, untieEmbeddingsAndOutputWeights: untied)
        }
        var state: [String: Tensor] = [:]
        for (key, t) in golden where key.hasPrefix("param.") { state[String(key.dropFirst(6))] = t }
        try model.loadStateDict(state)

        let logits = model(golden["input_ids"]!.to(device))
        assertClose(logits.floats(), golden["logits"]!.floats(), tolerance, "\(name) logits", file: file, line: line)
        let loss = Functional.crossEntropy(logits, labels: golden["labels"]!.to(device)).mean()
        XCTAssertEqual(loss.item(), golden["loss"]!.item(), accuracy: tolerance * golden["loss"]!.item(), name, file: file, line: line)
        loss.backward()
        for (key, parameter) in model.namedParameters() {
            assertClose(parameter.grad!.floats(), golden["grad." + key]!.floats(), tolerance, "\(name) grad \(key)",
                        file: file, line: line)
        }
    }

    /// Max absolute difference within `tolerance` of the reference's largest magnitude (the CPU's worst is 1.4e-6).
    func assertClose(_ a: [Float], _ b: [Float], _ tolerance: Float, _ what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(b.map(abs).max() ?? 0, 1e-12)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(what): max |diff| \(worst) vs scale \(scale)", file: file, line: line)
    }
}
