import Foundation
import XCTest
@testable import MegatronCore

/// `config.json` sizes that would allocate terabytes, or are not positive integers, are refused before any
/// model is built, naming the file and key.
final class HuggingFaceConfigSizesTests: XCTestCase {
    private func load(_ config: String) throws -> (URL, Error?) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hfcfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try Data(config.utf8).write(to: dir.appendingPathComponent("config.json"))
        do {
            _ = try HuggingFaceGPT.load(directory: dir)
            return (dir, nil)
        } catch {
            return (dir, error)
        }
    }

    private func assertRefused(_ config: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (dir, error) = try load(config)
        let message = error.map { "\($0)" } ?? "loaded"
        XCTAssertTrue(message.contains(text) && message.contains(dir.appendingPathComponent("config.json").path),
                      "\(message) should say \(text)", file: file, line: line)
    }

    private let llama = #""model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "#
        + #""intermediate_size": 128, "max_position_embeddings": 128"#

    func testSizesAreCheckedBeforeAllocating() throws {
        // A small, valid config passes the check and fails later, on the missing weights.
        let (_, error) = try load("{" + llama + #", "vocab_size": 256}"#)
        XCTAssertTrue("\(error.map { "\($0)" } ?? "")".contains("neither model.safetensors nor model.safetensors.index.json"), "\(String(describing: error))")
        try assertRefused("{" + llama + #", "vocab_size": 1e12}"#, "\"vocab_size\" is 1000000000000.0; it must be a positive integer below 2^31")
        try assertRefused("{" + llama + #", "vocab_size": -5}"#, "\"vocab_size\" is -5")
        try assertRefused("{" + llama + #", "vocab_size": 0}"#, "\"vocab_size\" is 0")
        try assertRefused("{" + llama + #", "vocab_size": "32000"}"#, "\"vocab_size\" is the string \"32000\"")
        try assertRefused("{" + llama + #", "vocab_size": 256, "num_key_value_heads": 0}"#, "\"num_key_value_heads\" is 0")
        try assertRefused(#"{"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 0, "vocab_size": 256, "n_positions": 64}"#,
                          "\"n_head\" is 0")
        try assertRefused(#"{"model_type": "gpt2", "n_layer": 2, "n_embd": 1000000000, "n_head": 8, "vocab_size": 50257, "#
            + #""n_positions": 1024}"#, "more than this machine's")
        try assertRefused("{" + llama.replacingOccurrences(of: #""num_hidden_layers": 2"#, with: #""num_hidden_layers": 2000000000"#)
            + #", "vocab_size": 256}"#, "more than this machine's")
    }

    func testParameterCountOfKnownShapes() {
        // GPT-2 124M: 124,439,808 parameters of which norms and biases are 121,344 (left out of the bound).
        let gpt2 = HuggingFaceConfigSizes.parameterCount(
            ["vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024], tied: true)
        XCTAssertEqual(gpt2, 124_439_808 - 121_344)
        // LLaMA-2 7B: 6,738,415,616 parameters of which the RMSNorm weights are 266,240.
        let llama = HuggingFaceConfigSizes.parameterCount(
            ["vocab_size": 32000, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
             "intermediate_size": 11008], tied: false)
        XCTAssertEqual(llama, 6_738_415_616 - 266_240)
    }
}
