import Foundation
import XCTest
@testable import MegatronCore

/// The mixture-of-experts fields of Mixtral, Qwen2-MoE and Qwen3-MoE `config.json`s: the layer pattern as
/// transformers builds it, the spellings of transformers 4 and 5, what is refused by name, and which
/// architecture a Megatron MoE model exports as.
final class HuggingFaceMoEConfigTests: XCTestCase {
    func config(_ arch: String, _ edit: (inout [String: Any]) -> Void = { _ in }) throws -> HuggingFaceConfig {
        let url = HuggingFaceFixtures.directory(arch).appendingPathComponent("config.json")
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        return try HuggingFaceConfig(json: json, file: "config.json")
    }

    func assertRefused(_ arch: String, _ edit: (inout [String: Any]) -> Void, mentions: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try config(arch, edit), file: file, line: line) { error in
            for text in mentions { XCTAssertTrue("\(error)".contains(text), "\(error) does not mention \(text)", file: file, line: line) }
        }
    }

    /// Layer i is MoE unless mlp_only_layers lists it, and only when (i + 1) is a multiple of
    /// decoder_sparse_step (Qwen2MoeDecoderLayer's rule).
    func testLayerPatternFollowsDecoderSparseStepAndMlpOnlyLayers() throws {
        func layers(_ step: Int, _ dense: [Int], count: Int = 4) throws -> [Bool]? {
            try config("qwen3_moe") {
                $0["num_hidden_layers"] = count
                $0["decoder_sparse_step"] = step
                $0["mlp_only_layers"] = dense
            }.transformer.moe?.layers
        }
        XCTAssertEqual(try layers(1, []), [true, true, true, true])
        XCTAssertEqual(try layers(2, []), [false, true, false, true])
        XCTAssertEqual(try layers(1, [0, 3]), [false, true, true, false])
        XCTAssertEqual(try layers(2, [1]), [false, false, false, true])
    }

    /// transformers 5 writes Qwen3-MoE's expert count as num_local_experts; without norm_topk_prob the
    /// top-k keeps the softmax over all experts (Megatron's pre-softmax); the aux-loss coefficient carries over.
    func testSpellingsAndRouterFields() throws {
        let v4 = try config("qwen3_moe") { $0["num_local_experts"] = nil; $0["num_experts"] = 8 }
        let v5 = try config("qwen3_moe") { $0["num_experts"] = nil; $0["num_local_experts"] = 8 }
        XCTAssertEqual(v4.transformer, v5.transformer)
        XCTAssertEqual(v4.transformer.moe?.numExperts, 8)
        let unnormalised = try config("qwen3_moe") { $0["norm_topk_prob"] = false; $0["router_aux_loss_coef"] = 0.0 }
        XCTAssertEqual(unnormalised.transformer.moe?.preSoftmax, true)
        XCTAssertEqual(unnormalised.transformer.moe?.loadBalancing, [])
        let unbiased = try config("qwen2_moe") { $0["qkv_bias"] = false }
        XCTAssertFalse(unbiased.transformer.addQKVBias)
    }

    /// What Megatron's MoE cannot run as transformers does, or what does not describe a model, is named.
    func testFieldsThatWouldChangeTheMathAreRefusedByName() {
        assertRefused("mixtral", { $0["router_jitter_noise"] = 0.1 }, mentions: ["router_jitter_noise", "0.1"])
        assertRefused("mixtral", { $0["num_experts_per_tok"] = 1 }, mentions: ["num_experts_per_tok", "renormalised"])
        assertRefused("qwen3_moe", { $0["num_experts_per_tok"] = 9 }, mentions: ["num_experts_per_tok", "9", "8 experts"])
        assertRefused("qwen3_moe", { $0["mlp_only_layers"] = [2] }, mentions: ["mlp_only_layers", "layer 2"])
        assertRefused("qwen3_moe", { $0["mlp_only_layers"] = "all" }, mentions: ["mlp_only_layers", "not a list"])
        assertRefused("qwen3_moe", { $0["attention_bias"] = true }, mentions: ["attention_bias"])
        assertRefused("qwen3_moe", { $0["use_sliding_window"] = true; $0["sliding_window"] = 4 }, mentions: ["use_sliding_window"])
        assertRefused("mixtral", { $0["sliding_window"] = 4 }, mentions: ["sliding_window", "4"])
        assertRefused("qwen2_moe", { $0["shared_expert_intermediate_size"] = nil }, mentions: ["shared_expert_intermediate_size", "missing"])
        assertRefused("qwen2_moe", { $0["moe_intermediate_size"] = 0 }, mentions: ["moe_intermediate_size", "positive integer"])
        assertRefused("mixtral", { $0["num_local_experts"] = nil }, mentions: ["num_local_experts", "missing"])
        // 2^20 experts of this size would not fit any machine's memory.
        assertRefused("mixtral", { $0["num_local_experts"] = 1 << 20; $0["hidden_size"] = 4096 }, mentions: ["parameters", "memory"])
    }

    /// A Megatron MoE model exports as the architecture that holds its routing, or is refused with the difference.
    func testExportArchitectureFollowsTheRouting() throws {
        let mixtral = try config("mixtral").transformer
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: mixtral), .mixtral)
        var preSoftmax = mixtral
        preSoftmax.moe?.preSoftmax = true
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: preSoftmax)) { error in
            XCTAssertTrue("\(error)".contains("--moe-router-pre-softmax"), "\(error)")
        }
        var sigmoid = mixtral
        sigmoid.moe?.scoreFunction = .sigmoid
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: sigmoid)) { error in
            XCTAssertTrue("\(error)".contains("sigmoid router scores"), "\(error)")
        }
        var ungated = try config("qwen2_moe").transformer
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: ungated), .qwen2MoE)
        ungated.moe?.sharedExpertGate = nil
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: ungated)) { error in
            XCTAssertTrue("\(error)".contains("gated shared expert"), "\(error)")
        }
        // Dense layers among the MoE ones are Qwen's mlp_only_layers.
        let json = HuggingFaceGPT.configJSON(architecture: .qwen2MoE, config: try config("qwen2_moe").transformer,
                                             vocabSize: 100, maxPositions: 32, tied: false)
        XCTAssertEqual(json["mlp_only_layers"] as? [Int], [0])
        XCTAssertEqual(json["decoder_sparse_step"] as? Int, 1)
        XCTAssertEqual(json["norm_topk_prob"] as? Bool, false)
    }
}
