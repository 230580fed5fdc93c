import Foundation
import XCTest
import MegatronCore
import MegatronTestSupport

/// `megatron convert` and `megatron generate` run as a user runs them, on the tiny Hugging Face models of
/// scripts/fixtures/make_hf_golden.py: what the import cannot run faithfully is refused by name, and
/// `generate` reads the checkpoint's own tokenizer and continues a prompt as transformers does.
final class ConvertGenerateInputTests: XCTestCase {
    static func fixture(_ arch: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("MegatronCoreTests/Fixtures/hf/\(arch)")
    }

    var scratch: URL!

    override func setUpWithError() throws { scratch = try scratchDirectory("convert-generate") }

    /// A copy of a fixture's directory whose config.json `edit` changed.
    func huggingFaceDirectory(_ arch: String, _ name: String, edit: (inout [String: Any]) -> Void = { _ in }) throws -> URL {
        let source = Self.fixture(arch), target = scratch.appendingPathComponent(name)
        try FileManager.default.copyItem(at: source, to: target)
        let configURL = target.appendingPathComponent("config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        return target
    }

    /// The fixture `arch` converted to a Megatron checkpoint in the scratch folder; returns its path and convert's output.
    func converted(_ arch: String, _ megatron: MegatronProcess) throws -> (path: String, output: String) {
        let checkpoint = scratch.appendingPathComponent("\(arch)-megatron").path
        let run = try megatron.run(["convert", "--loader", "hf", "--saver", "megatron", "--load-dir", Self.fixture(arch).path,
                                    "--save-dir", checkpoint])
        XCTAssertEqual(run.status, 0, run.output)
        return (checkpoint, run.output)
    }

    func convertToMegatron(_ directory: URL) -> [String] {
        ["convert", "--loader", "hf", "--saver", "megatron", "--load-dir", directory.path,
         "--save-dir", scratch.appendingPathComponent("out-\(UUID().uuidString)").path]
    }

    /// Every config.json field that would change the model and that the import does not implement.
    func testConfigFieldsThatWouldChangeTheMathAreRefusedByName() throws {
        let megatron = try MegatronProcess.built()
        let rows: [(String, (inout [String: Any]) -> Void, [String])] = [
            ("llama", { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0] },
             ["rope_parameters.rope_type", "yarn"]),
            ("llama", { $0["rope_parameters"] = nil; $0["rope_scaling"] = ["type": "dynamic", "factor": 2.0] },
             ["rope_scaling.type", "dynamic"]),
            ("llama3", { $0["rope_parameters"] = ["rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0] },
             ["rope_parameters.low_freq_factor", "missing"]),
            ("mistral", { $0["sliding_window"] = 16 }, ["sliding_window", "16"]),
            ("qwen2", { $0["use_sliding_window"] = true; $0["sliding_window"] = 8; $0["max_window_layers"] = 0 },
             ["use_sliding_window"]),
            ("llama", { $0["attention_bias"] = true }, ["attention_bias"]),
            ("qwen3", { $0["attention_bias"] = true }, ["attention_bias"]),
            ("llama", { $0["mlp_bias"] = true }, ["mlp_bias"]),
            ("llama", { $0["hidden_act"] = "gelu" }, ["hidden_act", "gelu"]),
            ("gpt2", { $0["activation_function"] = "relu" }, ["activation_function", "relu"]),
            ("gpt2", { $0["scale_attn_by_inverse_layer_idx"] = true }, ["scale_attn_by_inverse_layer_idx"]),
            ("llama", { $0["partial_rotary_factor"] = 0.5 }, ["partial_rotary_factor"]),
            ("llama", { $0["head_dim"] = NSNull(); $0["num_attention_heads"] = 3 }, ["head_dim", "num_attention_heads 3"]),
            ("llama", { $0["quantization_config"] = ["quant_method": "gptq"] }, ["quantization_config"]),
            ("llama", { $0["model_type"] = "falcon" }, ["model_type 'falcon'"]),
            ("llama", { $0["num_hidden_layers"] = "two" }, ["num_hidden_layers", "must be a positive integer"]),
            ("llama", { $0["hidden_size"] = 32 }, ["embed_tokens.weight", "[100, 16]", "[100, 32]"]),
            ("mixtral", { $0["router_jitter_noise"] = 0.1 }, ["router_jitter_noise"]),
            ("qwen2_moe", { $0["moe_intermediate_size"] = 4 }, ["experts.0.gate_proj.weight", "[4, 16]", "[8, 16]"]),
        ]
        for (index, (arch, edit, mentions)) in rows.enumerated() {
            let directory = try huggingFaceDirectory(arch, "row\(index)", edit: edit)
            try megatron.assertCleanFailure(convertToMegatron(directory), mentions: mentions + [directory.path])
        }
    }

    /// A sharded checkpoint whose index names a missing shard, a tensor its shard lacks, or a path
    /// outside the directory.
    func testBrokenShardIndexIsRefusedByName() throws {
        let megatron = try MegatronProcess.built()
        let cases: [(String, (inout [String: String]) -> Void, [String])] = [
            ("missing", { map in map["model.norm.weight"] = "model-00009-of-00009.safetensors" }, ["model-00009-of-00009.safetensors"]),
            ("misplaced", { map in
                let other = map["model.norm.weight"] == "model-00001-of-00002.safetensors" ? "model-00002-of-00002.safetensors"
                    : "model-00001-of-00002.safetensors"
                map["model.norm.weight"] = other
            }, ["model.norm.weight", "does not hold it"]),
            ("outside", { map in map["model.norm.weight"] = "../model.safetensors" }, ["../model.safetensors", "not a file name"]),
        ]
        for (name, edit, mentions) in cases {
            let directory = try huggingFaceDirectory("llama3", name)
            let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
            var index = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: indexURL)) as? [String: Any])
            var map = try XCTUnwrap(index["weight_map"] as? [String: String])
            edit(&map)
            index["weight_map"] = map
            try JSONSerialization.data(withJSONObject: index).write(to: indexURL)
            try megatron.assertCleanFailure(convertToMegatron(directory), mentions: mentions + ["model.safetensors.index.json"])
        }
    }

    /// The converted checkpoint carries the tokenizer: no tokenizer flags, and the prompt's ids and the
    /// greedy continuation are transformers' (cli_golden.json); text output separates prompt and continuation.
    func testGenerateReadsTheRecordedTokenizerAndContinuesAsTransformers() throws {
        let megatron = try MegatronProcess.built()
        let checkpoint = try converted("llama", megatron).path
        let golden = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.fixture("llama").appendingPathComponent("cli_golden.json"))) as? [String: Any])
        let prompt = try XCTUnwrap(golden["prompt"] as? String)
        let expected = try XCTUnwrap(golden["greedy_tokens"] as? [Int])
        let json = try megatron.run(["generate", "--load", checkpoint, "--prompt", prompt, "--greedy", "--device", "cpu",
                                     "--tokens-to-generate", "\(expected.count)", "--output-format", "json"])
        XCTAssertEqual(json.status, 0, json.output)
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]], json.output)
        XCTAssertEqual(results.first?["prompt_tokens"] as? [Int], golden["prompt_tokens"] as? [Int])
        XCTAssertEqual(results.first?["tokens"] as? [Int], expected)
        XCTAssertTrue(json.stderr.contains("as the checkpoint records"), json.stderr)

        let text = try megatron.run(["generate", "--load", checkpoint, "--prompt", prompt, "--greedy", "--device", "cpu",
                                     "--tokens-to-generate", "4"])
        XCTAssertEqual(text.status, 0, text.output)
        XCTAssertTrue(text.stdout.hasPrefix("----- prompt 1 -----\n\(prompt)\n----- continuation 1 -----\n"), text.stdout)

        // A prompt longer than the 32 positions keeps its last 32 tokens, and the length is cut to what fits.
        let long = try megatron.run(["generate", "--load", checkpoint, "--prompt", String(repeating: "the cat sat on the mat ", count: 12),
                                     "--greedy", "--device", "cpu", "--tokens-to-generate", "8"])
        XCTAssertEqual(long.status, 0, long.output)
        XCTAssertTrue(long.stderr.contains("keeping its last 32 (max_position_embeddings 32)"), long.stderr)
        XCTAssertTrue(long.stderr.contains("--tokens-to-generate 8: --prompt 1"), long.stderr)
        XCTAssertTrue(long.stderr.contains("leaves room for 1"), long.stderr)

        // Ids past the checkpoint's 100 (NullTokenizer reads a prompt as ids): the prompt and the id are named.
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "5 250 7", "--device", "cpu",
                                         "--tokenizer-type", "NullTokenizer", "--vocab-size", "1000"],
                                        mentions: ["--prompt 1", "5 250 7", "token id 250", "outside the checkpoint's vocabulary of 100"])

        // The recorded tokenizer broken, then gone: the file is named, with the flags to give instead.
        try Data("{}".utf8).write(to: URL(fileURLWithPath: checkpoint + "/tokenizer/tokenizer.json"))
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "the", "--device", "cpu"],
                                        mentions: ["tokenizer/tokenizer.json", "--tokenizer-type"])
        try FileManager.default.removeItem(atPath: checkpoint + "/tokenizer")
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "the", "--device", "cpu"],
                                        mentions: ["tokenizer", "does not exist", "--tokenizer-type"])
    }

    /// Mixtral, Qwen2-MoE and Qwen3-MoE converted to Megatron checkpoints: `generate` continues transformers'
    /// greedy prompt (ids through NullTokenizer) token for token, and `convert` writes them back as their own class.
    func testMixtureOfExpertsConvertAndGenerateAsTransformers() throws {
        let megatron = try MegatronProcess.built()
        for (arch, modelClass) in [("mixtral", "MixtralForCausalLM"), ("qwen2_moe", "Qwen2MoeForCausalLM"), ("qwen3_moe", "Qwen3MoeForCausalLM")] {
            let golden = try SafeTensors.read(Self.fixture(arch).appendingPathComponent("golden.safetensors")).tensors
            let expected = try XCTUnwrap(golden["greedy_tokens"]).ints()
            let prompt = try XCTUnwrap(golden["greedy_prompt"]).ints().map(String.init).joined(separator: " ")
            let checkpoint = try converted(arch, megatron).path
            let run = try megatron.run(["generate", "--load", checkpoint, "--prompt", prompt, "--greedy", "--device", "cpu",
                                        "--tokenizer-type", "NullTokenizer", "--vocab-size", "100",
                                        "--tokens-to-generate", "\(expected.count)", "--output-format", "json"])
            XCTAssertEqual(run.status, 0, run.output)
            let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]], run.output)
            XCTAssertEqual(results.first?["tokens"] as? [Int], expected, arch)
            let back = try megatron.run(["convert", "--loader", "megatron", "--saver", "hf", "--load-dir", checkpoint,
                                         "--save-dir", scratch.appendingPathComponent("\(arch)-hf").path])
            XCTAssertEqual(back.status, 0, back.output)
            XCTAssertTrue(back.stdout.contains("saved hf checkpoint (\(modelClass))"), back.output)
        }
    }

    /// pretrain-gpt --load of a converted Qwen2-MoE: flags without its shared expert's gate (--moe-shared-expert-gate)
    /// are refused with the difference named, not trained as another model that drops the gate's weights.
    func testPretrainRefusesFlagsWithoutTheCheckpointsExperts() throws {
        let megatron = try MegatronProcess.built()
        let checkpoint = try converted("qwen2_moe", megatron).path
        let flags = ["pretrain-gpt", "--num-layers", "2", "--hidden-size", "16", "--num-attention-heads", "2", "--ffn-hidden-size", "32",
                     "--num-experts", "8", "--moe-router-topk", "2", "--moe-ffn-hidden-size", "8", "--moe-layer-freq", "[0,1]",
                     "--moe-router-pre-softmax", "--moe-shared-expert-intermediate-size", "16", "--add-qkv-bias",
                     "--normalization", "RMSNorm", "--swiglu", "--position-embedding-type", "rope",
                     "--untie-embeddings-and-output-weights", "--disable-bias-linear", "--seq-length", "16",
                     "--max-position-embeddings", "32", "--micro-batch-size", "1", "--train-iters", "1", "--lr", "1e-4",
                     "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "100", "--device", "cpu",
                     "--load", checkpoint, "--finetune"]
        try megatron.assertCleanFailure(flags, mentions: ["--num-experts", "shared expert of 16 with a sigmoid gate (--moe-shared-expert-gate)"])
    }

    func testGenerateRefusesWhatItCannotServe() throws {
        let megatron = try MegatronProcess.built()
        // Qwen2's fixture has no tokenizer.json: the checkpoint records none, and its vocabulary is not bytes.
        let (checkpoint, output) = try converted("qwen2", megatron)
        XCTAssertTrue(output.contains("has no tokenizer.json"), output)
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "hi", "--device", "cpu"],
                                        mentions: ["records no tokenizer", "--tokenizer-type"])
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "hi", "--vocab-file", "v.json"],
                                        mentions: ["--vocab-file needs --tokenizer-type"])
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "hi", "--device", "tpu"],
                                        mentions: ["--device", "tpu"])
        try megatron.assertCleanFailure(["generate", "--load", checkpoint, "--prompt", "hi", "--device", "cuda",
                                         "--tokenizer-type", "NullTokenizer", "--vocab-size", "100"],
                                        mentions: ["--device cuda"])
    }
}
