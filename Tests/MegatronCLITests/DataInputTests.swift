import Foundation
import XCTest
import MegatronTestSupport

/// Broken input files through the real executable: `preprocess-data` with each kind of bad JSONL and tokenizer
/// file, `pretrain-gpt --data-path` with each kind of damaged `.bin/.idx`, cache and out-of-vocabulary data, and
/// `convert` with a crafted config.json or safetensors. Every row must exit non-zero, on its own (no signal),
/// naming the file at fault.
final class DataInputTests: XCTestCase {
    private var dir = ""
    private let nullTokenizer = ["--tokenizer-type", "NullTokenizer", "--vocab-size", "100"]

    override func setUpWithError() throws { dir = try scratchDirectory("megatron-cli-data").path }

    @discardableResult
    private func file(_ name: String, _ bytes: Data) throws -> String {
        let path = dir + "/" + name
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    private func file(_ name: String, _ text: String) throws -> String { try file(name, Data(text.utf8)) }

    private func preprocess(_ input: String, prefix: String = "out", tokenizer: [String]? = nil) -> [String] {
        ["preprocess-data", "--input", input, "--output-prefix", dir + "/" + prefix, "--workers", "1"] + (tokenizer ?? nullTokenizer)
    }

    func testPreprocessDataRefusesEachBadInputFile() throws {
        let megatron = try MegatronProcess.built()
        let good = #"{"text": "1 2 3"}"# + "\n"
        let rows: [(String, String, [String])] = [
            ("malformed.jsonl", good + #"{"text": "4"#, ["line 2: not valid JSON"]),
            ("nokey.jsonl", #"{"title": "4"}"#, ["line 1: no key \"text\"", "--json-keys"]),
            ("number.jsonl", #"{"text": 4}"#, ["line 1: \"text\" must be a string"]),
            ("words.jsonl", good + #"{"text": "1 two"}"#, ["line 2", "\"two\"", "not an integer token id"]),
            ("toolarge.jsonl", #"{"text": "1 100"}"#, ["line 1", "token id 100", "--vocab-size"]),
            ("empty.jsonl", "", ["no documents"]),
        ]
        for (name, text, mentions) in rows {
            let input = try file(name, text)
            try megatron.assertCleanFailure(preprocess(input), mentions: mentions + [input])
        }
        let utf8 = try file("utf8.jsonl", Data(#"{"text": "1 "#.utf8) + Data([0xC3, 0x28]) + Data(#""}"#.utf8))
        try megatron.assertCleanFailure(preprocess(utf8), mentions: [utf8, "line 1: invalid UTF-8 at byte 12"])
        try megatron.assertCleanFailure(preprocess(dir + "/absent.jsonl"), mentions: ["--input \(dir)/absent.jsonl does not exist"])
        let input = try file("good.jsonl", good)
        try megatron.assertCleanFailure(preprocess(input, prefix: "missing/out"),
                                        mentions: ["--output-prefix \(dir)/missing/out", "does not exist"])
        let notGzip = try file("plain.jsonl.gz", good)
        try megatron.assertCleanFailure(preprocess(notGzip), mentions: [notGzip, "gzip failed"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("out") }, [],
                       "no dataset is left by a failed run")
    }

    func testPreprocessDataRefusesEachBadTokenizerFile() throws {
        let megatron = try MegatronProcess.built()
        let input = try file("good.jsonl", #"{"text": "ab"}"# + "\n")
        let vocab = try file("vocab.json", #"{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}"#)
        let merges = try file("merges.txt", "a b\n")
        func gpt2(_ vocab: String, _ merges: String) -> [String] {
            ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", vocab, "--merge-file", merges]
        }
        try megatron.assertCleanFailure(preprocess(input, tokenizer: gpt2(dir + "/none.json", merges)),
                                        mentions: ["--vocab-file \(dir)/none.json does not exist"])
        let broken = try file("broken.json", #"{"a": 0, "#)
        try megatron.assertCleanFailure(preprocess(input, tokenizer: gpt2(broken, merges)), mentions: [broken, "not valid JSON"])
        let negative = try file("negative.json", #"{"a": -7, "<|endoftext|>": 3}"#)
        try megatron.assertCleanFailure(preprocess(input, tokenizer: gpt2(negative, merges)), mentions: [negative, "has id -7"])
        let unknown = try file("unknown.txt", "a q\n")
        try megatron.assertCleanFailure(preprocess(input, tokenizer: gpt2(vocab, unknown)), mentions: [unknown, "(a q)"])
        let tokenizerJSON = try file("tokenizer.json", #"{"model": {"type": "BPE", "vocab": {"a": "zero"}}}"#)
        try megatron.assertCleanFailure(preprocess(input, tokenizer: ["--tokenizer-type", "HuggingFaceTokenizer",
                                                                       "--tokenizer-model", tokenizerJSON]),
                                        mentions: [tokenizerJSON, "has id zero"])
        let ranks = try file("empty.tiktoken", "")
        try megatron.assertCleanFailure(preprocess(input, tokenizer: ["--tokenizer-type", "TikTokenizer", "--tokenizer-model", ranks]),
                                        mentions: [ranks, "holds no ranks"])
    }

    /// A dataset of 40 documents of ids 0..<90 made by `preprocess-data` itself (`<dir>/<name>_text_document`).
    private func dataset(_ name: String, badID: Int? = nil) throws -> String {
        let lines = (0..<40).map { d -> String in
            var ids = (0..<30).map { ($0 * 7 + d) % 90 }
            if let badID, d == 11 { ids[3] = badID }
            return #"{"text": ""# + ids.map(String.init).joined(separator: " ") + #""}"#
        }
        let input = try file(name + ".jsonl", lines.joined(separator: "\n"))
        let tokenizer = ["--tokenizer-type", "NullTokenizer", "--vocab-size", "1000"]
        let made = try MegatronProcess.built().run(preprocess(input, prefix: name, tokenizer: tokenizer))
        XCTAssertEqual(made.status, 0, made.output)
        return dir + "/" + name + "_text_document"
    }

    private func pretrain(_ prefix: String, _ extra: [String] = []) -> [String] {
        ["pretrain-gpt", "--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2", "--seq-length", "16",
         "--max-position-embeddings", "16", "--micro-batch-size", "2", "--global-batch-size", "2", "--train-iters", "2", "--lr", "1e-3",
         "--split", "1,0,0", "--data-path", prefix] + nullTokenizer + extra
    }

    /// Rewrites `path` through `edit`.
    private func edit(_ path: String, _ change: (inout Data) -> Void) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        change(&data)
        try data.write(to: URL(fileURLWithPath: path))
    }

    func testPretrainRefusesEachDamagedDataset() throws {
        let megatron = try MegatronProcess.built()
        let rows: [(String, (String) throws -> Void, (String) -> [String])] = [
            ("truncated", { try self.edit($0 + ".idx") { $0.removeLast(9) } }, { [$0 + ".idx", "truncated index"] }),
            ("magic", { try self.edit($0 + ".idx") { $0[0] = 0x58 } }, { [$0 + ".idx", "bad magic"] }),
            ("version", { try self.edit($0 + ".idx") { $0[9] = 3 } }, { [$0 + ".idx", "version 3"] }),
            ("float", { try self.edit($0 + ".idx") { $0[17] = 7 } }, { [$0 + ".idx", "float32", "token ids must be integers"] }),
            ("counts", { try self.edit($0 + ".idx") { $0[26] = 3 } }, { [$0 + ".idx", "trailing bytes"] }),
            ("pointer", { try self.edit($0 + ".idx") { $0[34 + 4 * 40 + 8 * 5 + 1] ^= 0x10 } }, { [$0 + ".idx", "sequence 5 starts"] }),
            ("shortbin", { try self.edit($0 + ".bin") { $0.removeLast(6) } }, { [$0 + ".bin", "holds"] }),
            ("nobin", { try FileManager.default.removeItem(atPath: $0 + ".bin") }, { [$0 + ".bin"] }),
        ]
        for (name, damage, mentions) in rows {
            let prefix = try dataset(name)
            try damage(prefix)
            try megatron.assertCleanFailure(pretrain(prefix), mentions: mentions(prefix))
        }
        try megatron.assertCleanFailure(pretrain(dir + "/absent_text_document"), mentions: [dir + "/absent_text_document.idx"])
    }

    func testPretrainNamesOutOfVocabularyIdsAndCacheProblems() throws {
        let megatron = try MegatronProcess.built()
        // Id 500 in document 11, against NullTokenizer's vocabulary of 100 (128 padded).
        let outOfVocabulary = try dataset("ids", badID: 500)
        try megatron.assertCleanFailure(pretrain(outOfVocabulary, ["--train-iters", "40"]),
                                        mentions: ["token id 500", "document 11 of \(outOfVocabulary)", "vocabulary 0..<128"])
        // A cache made for other contents is rebuilt, saying so; a cache file that is not .npy is named.
        let prefix = try dataset("cached")
        XCTAssertEqual(try megatron.run(pretrain(prefix)).status, 0)
        let fewer = (0..<25).map { #"{"text": "\#($0 % 90) 1 2 3 4 5 6 7 8 9 10 11 12"}"# }.joined(separator: "\n")
        let made = try megatron.run(preprocess(try file("fewer.jsonl", fewer), prefix: "cached",
                                               tokenizer: ["--tokenizer-type", "NullTokenizer", "--vocab-size", "1000"]))
        XCTAssertEqual(made.status, 0, made.output)
        let rebuilt = try megatron.run(pretrain(prefix))
        XCTAssertEqual(rebuilt.status, 0, rebuilt.output)
        XCTAssertTrue(rebuilt.output.contains("do not fit the dataset"), rebuilt.output)
        let cache = prefix + "/cache/GPTDataset_indices"
        let sampleIndex = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: cache).first { $0.hasSuffix("sample_index.npy") })
        try edit(cache + "/" + sampleIndex) { $0.removeLast(3) }
        try megatron.assertCleanFailure(pretrain(prefix), mentions: [cache + "/" + sampleIndex, "delete it"])
    }

    /// `convert --loader hf`: config.json sizes that would allocate terabytes, and a crafted safetensors header.
    func testConvertRefusesCraftedHuggingFaceFiles() throws {
        let megatron = try MegatronProcess.built()
        let model = dir + "/hf"
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: false)
        let convert = ["convert", "--model-type", "GPT", "--loader", "hf", "--saver", "megatron", "--load-dir", model,
                       "--save-dir", dir + "/converted"]
        let shape = #""model_type": "llama", "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "#
            + #""intermediate_size": 32, "max_position_embeddings": 64"#
        let config = try file("hf/config.json", "{" + shape + #", "vocab_size": 1e12}"#)
        try megatron.assertCleanFailure(convert, mentions: [config, "\"vocab_size\""])
        try file("hf/config.json", "{" + shape + #", "vocab_size": 100}"#)
        let header = Data(#"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#.utf8)
        var bytes = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        let weights = try file("hf/model.safetensors", bytes + header + Data(count: 16))
        try megatron.assertCleanFailure(convert, mentions: [weights, "cannot hold"])
    }
}
