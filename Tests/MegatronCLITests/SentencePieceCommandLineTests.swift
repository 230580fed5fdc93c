import Foundation
import XCTest

/// `--tokenizer-type GPTSentencePieceTokenizer` / `Llama2Tokenizer` with `--tokenizer-model <file.model>` through
/// the real executable: `preprocess-data` writes the `sentencepiece` package's ids (the golden fixtures of
/// MegatronDataTests) and `</s>` after each document, `pretrain-gpt` trains 2 iterations on them and saves, and
/// `generate` finds the tokenizer the checkpoint records.
final class SentencePieceCommandLineTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("megatron-cli-spm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// MegatronDataTests' SentencePiece fixtures (scripts/fixtures/make_sentencepiece_fixtures.py).
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("MegatronDataTests/Fixtures/tokenizers/sentencepiece")

    func testPreprocessTrainAndGenerateWithEachSentencePieceType() throws {
        let megatron = try MegatronProcess.built()
        for (type, name) in [("GPTSentencePieceTokenizer", "bpe_llama"), ("Llama2Tokenizer", "unigram_rules")] {
            let model = Self.fixtures.appendingPathComponent("\(name).model").path
            let golden = try XCTUnwrap(try JSONSerialization.jsonObject(
                with: Data(contentsOf: Self.fixtures.appendingPathComponent("\(name).json"))) as? [String: Any])
            let cases = try XCTUnwrap(golden["cases"] as? [[String: Any]])
            let eos = try XCTUnwrap(golden["eos"] as? Int)
            // The corpus documents and the tricky texts that give tokens (Megatron writes no empty document).
            let documents = cases.filter { !($0["ids"] as! [Int]).isEmpty }.suffix(12)
            let jsonl = dir + "/\(name).jsonl"
            let lines = try documents.map { String(decoding: try JSONSerialization.data(withJSONObject: ["text": $0["text"]!]), as: UTF8.self) }
            try lines.joined(separator: "\n").write(toFile: jsonl, atomically: true, encoding: .utf8)
            let tokenizer = ["--tokenizer-type", type, "--tokenizer-model", model]

            let prefix = dir + "/\(name)"
            let preprocessed = try megatron.run(["preprocess-data", "--input", jsonl, "--output-prefix", prefix, "--append-eod",
                                                 "--workers", "1"] + tokenizer)
            XCTAssertEqual(preprocessed.status, 0, preprocessed.output)
            let bin = try Data(contentsOf: URL(fileURLWithPath: prefix + "_text_document.bin"))
            let written = stride(from: 0, to: bin.count, by: 2).map { Int(bin[$0]) | Int(bin[$0 + 1]) << 8 }
            XCTAssertEqual(written, documents.flatMap { ($0["ids"] as! [Int]) + [eos] }, "\(type) \(name)")

            let checkpoint = dir + "/\(name)-checkpoint"
            let trained = try megatron.run(["pretrain-gpt", "--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2",
                                            "--seq-length", "16", "--max-position-embeddings", "16", "--micro-batch-size", "2",
                                            "--global-batch-size", "2", "--train-iters", "2", "--lr", "1e-3", "--split", "1,0,0",
                                            "--data-path", prefix + "_text_document", "--save", checkpoint, "--save-interval", "2"]
                                           + tokenizer)
            XCTAssertEqual(trained.status, 0, trained.output)
            XCTAssertTrue(trained.output.contains(" iteration        2/       2 |"), trained.output)
            let size = try XCTUnwrap(golden["piece_size"] as? Int)
            XCTAssertTrue(trained.output.contains(" > padded vocab (size: \(size)) with \(512 - size) dummy tokens (new size: 512)"),
                          trained.output)

            let prompt = try XCTUnwrap(cases.first { $0["text"] as? String == "Hello world" })
            let generated = try megatron.run(["generate", "--load", checkpoint, "--prompt", "Hello world", "--greedy",
                                              "--device", "cpu", "--tokens-to-generate", "3", "--output-format", "json"])
            XCTAssertEqual(generated.status, 0, generated.output)
            XCTAssertTrue(generated.stderr.contains("> tokenizer: \(type) from \(model), as the checkpoint records"), generated.stderr)
            let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(generated.stdout.utf8)) as? [[String: Any]],
                                        generated.output)
            XCTAssertEqual(results.first?["prompt_tokens"] as? [Int], prompt["ids"] as? [Int])
        }
    }
}
