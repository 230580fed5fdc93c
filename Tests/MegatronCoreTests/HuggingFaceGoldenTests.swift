import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// The tiny random Hugging Face models of scripts/fixtures/make_hf_golden.py, one per architecture the import reads.
enum HuggingFaceFixtures {
    static let architectures = ["gpt2", "llama", "llama3", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe"]

    static func directory(_ arch: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/\(arch)")
    }

    static func golden(_ arch: String) throws -> [String: Tensor] {
        try SafeTensors.read(directory(arch).appendingPathComponent("golden.safetensors")).tensors
    }
}

/// Our GPTModel against Hugging Face transformers on tiny random models: logits, loss, every parameter
/// gradient and a greedy continuation, for GPT-2, LLaMA (GQA), Llama 3.x (rope_scaling llama3, tied, sharded),
/// Mistral, Qwen2 (q/k/v biases), Qwen3 (q/k norm) and the mixtures of experts Mixtral, Qwen2-MoE and Qwen3-MoE.
final class HuggingFaceGoldenTests: XCTestCase {
    func testGPT2MatchesTransformers() throws { try compare("gpt2") }

    func testLlamaWithGQAAndRoPEMatchesTransformers() throws { try compare("llama") }

    func testLlama3WithRopeScalingFromShardsMatchesTransformers() throws {
        let config = try HuggingFaceConfig.read(HuggingFaceFixtures.directory("llama3"))
        XCTAssertEqual(config.transformer.ropeScaling,
                       .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64))
        XCTAssertTrue(config.tiedEmbeddings)
        try compare("llama3")
    }

    func testMistralMatchesTransformers() throws { try compare("mistral") }

    func testQwen2WithQKVBiasesMatchesTransformers() throws { try compare("qwen2") }

    func testQwen3WithQKNormMatchesTransformers() throws { try compare("qwen3") }

    /// 4 experts, top-2, the top-k probabilities renormalised (Megatron's softmax over the top-k logits).
    func testMixtralMatchesTransformers() throws {
        let moe = try XCTUnwrap(try HuggingFaceConfig.read(HuggingFaceFixtures.directory("mixtral")).transformer.moe)
        XCTAssertEqual([moe.numExperts, moe.topk, moe.ffnHiddenSize], [4, 2, 16])
        XCTAssertEqual(moe.layers, [true, true])
        XCTAssertFalse(moe.preSoftmax)
        XCTAssertEqual(moe.loadBalancing, [.init(kind: .auxLoss, coefficient: 0.02)])
        try compare("mixtral")
    }

    /// decoder_sparse_step 2 (layer 0 dense, layer 1 MoE), 8 experts, top-2 not renormalised (Megatron's
    /// pre-softmax), a shared expert with its sigmoid gate, q/k/v biases.
    func testQwen2MoEWithGatedSharedExpertMatchesTransformers() throws {
        let config = try HuggingFaceConfig.read(HuggingFaceFixtures.directory("qwen2_moe")).transformer
        let moe = try XCTUnwrap(config.moe)
        XCTAssertEqual(moe.layers, [false, true])
        XCTAssertEqual([moe.numExperts, moe.topk, moe.ffnHiddenSize, config.ffnHiddenSize], [8, 2, 8, 32])
        XCTAssertTrue(moe.preSoftmax)
        XCTAssertEqual(moe.sharedExpertIntermediateSize, 16)
        XCTAssertEqual(moe.sharedExpertGate, true)
        XCTAssertTrue(config.addQKVBias)
        try compare("qwen2_moe")
    }

    /// 8 experts, top-2 renormalised (norm_topk_prob), q/k norm.
    func testQwen3MoEMatchesTransformers() throws {
        let config = try HuggingFaceConfig.read(HuggingFaceFixtures.directory("qwen3_moe")).transformer
        let moe = try XCTUnwrap(config.moe)
        XCTAssertEqual(moe.layers, [true, true])
        XCTAssertFalse(moe.preSoftmax)
        XCTAssertNil(moe.sharedExpertIntermediateSize)
        XCTAssertTrue(config.qkLayernorm)
        try compare("qwen3_moe")
    }

    /// The rotary frequencies of Llama 3 scaling are transformers' own: those of the fixture (all three
    /// bands: kept, blended, stretched) and those of Llama-3.1-8B's shape, which Megatron's
    /// `--use-rope-scaling` (factor 8, fixed factors 1 and 4, original context 8192) must give.
    func testLlama3FrequenciesMatchTransformers() throws {
        let golden = try HuggingFaceFixtures.golden("llama3")
        let config = try HuggingFaceConfig.read(HuggingFaceFixtures.directory("llama3")).transformer
        let fixture = RotaryEmbedding(kvChannels: config.kvChannels, rotaryPercent: 1, base: config.rotaryBase,
                                      scaling: config.ropeScaling)
        assertClose(fixture.inverseFrequencies, golden["inv_freq"]!.floats(), relative: 2e-6, "fixture inv_freq")
        let unscaled = RotaryEmbedding(kvChannels: config.kvChannels, rotaryPercent: 1, base: config.rotaryBase)
        let ratios = zip(unscaled.inverseFrequencies, fixture.inverseFrequencies).map { $0 / $1 }
        XCTAssertEqual(ratios[0], 1, accuracy: 1e-6, "the shortest wavelength is kept")
        XCTAssertTrue(ratios[1] > 1.01 && ratios[1] < 7.99, "the middle band is blended, got \(ratios[1])")
        XCTAssertEqual(ratios[3], 8, accuracy: 1e-5, "the longest wavelength is stretched by the factor")
        let megatron = RotaryEmbedding(kvChannels: 128, rotaryPercent: 1, base: 500_000, scaling: .megatron(factor: 8))
        assertClose(megatron.inverseFrequencies, golden["inv_freq_llama31_8b"]!.floats(), relative: 2e-6, "Llama-3.1-8B inv_freq")
    }

    /// Each value within 2e-6 of the reference's, relatively: PyTorch's fp32 `pow` is off by an ulp in a
    /// quarter of the plain frequencies, and the blend of the middle band amplifies that ulp about tenfold.
    /// Weights beyond what config.json describes (here an o_proj bias) are refused by name; buffers older
    /// checkpoints saved (rotary inv_freq) are not weights and pass.
    func testTensorsConfigGivesNoPlaceToAreRefused() throws {
        let directory = HuggingFaceFixtures.directory("llama")
        let config = try HuggingFaceConfig.read(directory)
        var weights = try HuggingFaceGPT.readWeights(directory)
        weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = Tensor(shape: [4], values: [1, 0.1, 0.01, 0.001])
        XCTAssertNoThrow(try HuggingFaceGPT.megatronState(from: weights, config: config, source: "llama"))
        weights["model.layers.1.self_attn.o_proj.bias"] = Tensor(shape: [16], values: Array(repeating: 0, count: 16))
        XCTAssertThrowsError(try HuggingFaceGPT.megatronState(from: weights, config: config, source: "llama")) { error in
            XCTAssertTrue("\(error)".contains("model.layers.1.self_attn.o_proj.bias"), "\(error)")
        }
    }

    /// The same on the GPU (fp32): parameters placed with `onDevice`, every kernel on the device.
    func testEveryArchitectureMatchesTransformersOnTheGPU() throws {
        try requireGPU("GPU golden test")
        for arch in HuggingFaceFixtures.architectures { try compare(arch, device: .cuda(0)) }
    }

    func compare(_ arch: String, device: Device = .cpu, file: StaticString = #filePath, line: UInt = #line) throws {
        let directory = HuggingFaceFixtures.directory(arch)
        let loaded = try onDevice(device) { try HuggingFaceGPT.load(directory: directory) }
        XCTAssertEqual(loaded.architecture.rawValue, arch == "llama3" ? "llama" : arch, file: file, line: line)
        let golden = try HuggingFaceFixtures.golden(arch)
        let ids = golden["input_ids"]!.to(device), labels = golden["labels"]!.to(device)
        // transformers' gradients are of the language-model loss alone (it adds its router loss only with
        // output_router_logits): the aux loss, at router_aux_loss_coef, injects none here.
        for layer in loaded.model.moeLayers { layer.router.auxLossBackwardScale = 0 }
        let logits = loaded.model(ids).narrow(-1, start: 0, length: loaded.vocabSize)
        assertScaledClose(logits.floats(), golden["logits"]!.floats(), tolerance: 1e-4, "\(arch) logits", file: file, line: line)
        let loss = Functional.crossEntropy(logits, labels: labels).mean()
        XCTAssertEqual(loss.item(), golden["loss"]!.item(), accuracy: 1e-5 * golden["loss"]!.item(), file: file, line: line)
        loss.backward()

        var hfGrads: [String: Tensor] = [:]
        for (name, g) in golden where name.hasPrefix("grad.") { hfGrads[String(name.dropFirst(5))] = g }
        let expected = try HuggingFaceGPT.megatronState(from: hfGrads, config: try HuggingFaceConfig.read(directory), source: "golden")
        let params = loaded.model.stateDict()
        XCTAssertEqual(Set(expected.keys), Set(params.keys), file: file, line: line)
        for (name, want) in expected {
            var got = params[name]!.grad!
            if got.shape[0] != want.shape[0] { got = got.narrowed(0, start: 0, length: want.shape[0]) }
            assertScaledClose(got.floats(), want.floats(), tolerance: 1e-4, "\(arch) grad \(name)", file: file, line: line)
        }
        // transformers' greedy continuation (every step won by a clear margin), token for token.
        let greedy = loaded.model.generate(prompt: golden["greedy_prompt"]!.ints(), vocabSize: loaded.vocabSize,
                                           maxNewTokens: golden["greedy_tokens"]!.count, options: SamplingOptions(temperature: 0))
        XCTAssertEqual(greedy.tokens, golden["greedy_tokens"]!.ints(), "\(arch) greedy continuation", file: file, line: line)
    }
}

/// Max absolute difference within `tolerance` of the reference's largest magnitude.
/// Export back to Hugging Face: the weights come back bit for bit, and config.json is the one that
/// scripts/fixtures/make_hf_golden.py saw transformers reload into the same model (export_check.json).
final class HuggingFaceExportTests: XCTestCase {
    func testExportWritesWhatTransformersReloadedAsTheSameModel() throws {
        for arch in HuggingFaceFixtures.architectures {
            let source = HuggingFaceFixtures.directory(arch)
            let target = FileManager.default.temporaryDirectory.appendingPathComponent("hf-\(arch)-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: target) }
            let loaded = try HuggingFaceGPT.load(directory: source)
            let written = try HuggingFaceGPT.save(loaded.model, vocabSize: loaded.vocabSize, to: target, preferring: loaded.architecture)
            XCTAssertEqual(written, loaded.architecture, arch)
            let original = try HuggingFaceGPT.readWeights(source)
            let exported = try SafeTensors.read(target.appendingPathComponent("model.safetensors")).tensors
            XCTAssertEqual(Set(exported.keys), Set(original.keys), arch)
            for (name, t) in original {
                XCTAssertEqual(exported[name]?.shape, t.shape, "\(arch) \(name)")
                XCTAssertEqual(exported[name]?.floats(), t.floats(), "\(arch) \(name)")
            }
            let check = try jsonObject(source.appendingPathComponent("export_check.json"))
            XCTAssertEqual(check["loaded_class"] as? String, loaded.architecture.modelClass, arch)
            XCTAssertEqual(check["max_abs_logit_difference"] as? Double, 0, arch)
            XCTAssertEqual(check["greedy_tokens_match"] as? Bool, true, arch)
            XCTAssertEqual(check["weights_identical"] as? Bool, true, arch)
            let config = try jsonObject(target.appendingPathComponent("config.json"))
            XCTAssertEqual(config as NSDictionary, check["exported_config"] as? NSDictionary,
                           "\(arch): config.json differs from the one transformers was checked on; rerun make_hf_golden.py --megatron")
            let reloaded = try HuggingFaceGPT.load(directory: target)
            XCTAssertEqual(reloaded.model.config, loaded.model.config, arch)
        }
    }

    /// A Qwen2 model keeps its q/k/v biases on export, and a model that no architecture holds is refused
    /// with what differs.
    func testArchitectureFollowsTheModelOrIsRefusedWithTheDifference() throws {
        let qwen2 = try HuggingFaceGPT.load(directory: HuggingFaceFixtures.directory("qwen2")).model.config
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: qwen2), .qwen2)
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: qwen2, preferring: .llama), .qwen2)
        let mistral = try HuggingFaceGPT.load(directory: HuggingFaceFixtures.directory("mistral")).model.config
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: mistral), .llama)
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: mistral, preferring: .mistral), .mistral)
        var both = qwen2
        both.qkLayernorm = true
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: both)) { error in
            XCTAssertTrue("\(error)".contains("q/k/v biases") || "\(error)".contains("query/key norm"), "\(error)")
        }
        var partial = mistral
        partial.rotaryPercent = 0.5
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: partial)) { error in
            XCTAssertTrue("\(error)".contains("rotary_percent 0.5"), "\(error)")
        }
    }

    func jsonObject(_ url: URL) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], url.path)
    }
}

final class GPTCheckpointTests: XCTestCase {
    func testMegatronCheckpointRoundTripKeepsModelAndOutputs() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("gptckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let loaded = try HuggingFaceGPT.load(directory: HuggingFaceFixtures.directory("llama3"))
        var manifest = CheckpointManifest()
        manifest.huggingfaceArchitecture = "llama"
        try GPTCheckpoint.save(loaded.model, vocabSize: loaded.vocabSize, to: CheckpointDirectory(root: root), release: true,
                               manifest: manifest)
        let back = try GPTCheckpoint.load(from: CheckpointDirectory(root: root))
        XCTAssertEqual(back.vocabSize, 100)
        XCTAssertEqual(back.model.config, loaded.model.config)
        XCTAssertNotNil(back.model.config.ropeScaling)
        XCTAssertEqual(back.manifest.huggingfaceArchitecture, "llama")
        let tokens = Tensor(shape: [1, 5], ints: [1, 2, 3, 4, 5])
        XCTAssertEqual(withoutGrad { back.model(tokens).floats() }, withoutGrad { loaded.model(tokens).floats() })
    }
}
