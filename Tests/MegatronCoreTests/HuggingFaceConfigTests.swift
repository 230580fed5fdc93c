import Foundation
import XCTest
import MegatronData
@testable import MegatronCore

/// config.json spellings of transformers 4 and 5, and the tokenizer record a checkpoint carries.
final class HuggingFaceConfigTests: XCTestCase {
    func llamaConfig(_ edit: (inout [String: Any]) -> Void) throws -> HuggingFaceConfig {
        let url = HuggingFaceFixtures.directory("llama").appendingPathComponent("config.json")
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        return try HuggingFaceConfig(json: json, file: "config.json")
    }

    /// transformers 4's `rope_theta` + `rope_scaling` (with `type` or `rope_type`) and 5's `rope_parameters`
    /// describe the same model.
    func testRopeSpellingsOfTransformers4And5ReadAlike() throws {
        let llama3: [String: Any] = ["factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 16]
        let v5 = try llamaConfig { $0["rope_parameters"] = llama3.merging(["rope_type": "llama3", "rope_theta": 500000.0]) { a, _ in a } }
        let v4 = try llamaConfig {
            $0["rope_parameters"] = nil
            $0["rope_theta"] = 500000.0
            $0["rope_scaling"] = llama3.merging(["type": "llama3"]) { a, _ in a }
        }
        XCTAssertEqual(v5.transformer, v4.transformer)
        XCTAssertEqual(v4.transformer.rotaryBase, 500000)
        XCTAssertEqual(v4.transformer.ropeScaling,
                       .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16))
        let none = try llamaConfig { $0["rope_parameters"] = nil; $0["rope_scaling"] = NSNull() }
        XCTAssertNil(none.transformer.ropeScaling)
        XCTAssertEqual(none.transformer.rotaryBase, 10000)
    }

    /// Linear scaling (transformers' "linear": every frequency divided by the factor) is implemented.
    func testLinearRopeScalingDividesEveryFrequency() throws {
        let config = try llamaConfig { $0["rope_parameters"] = ["rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0] }
        XCTAssertEqual(config.transformer.ropeScaling, .linear(factor: 4))
        let scaled = RotaryEmbedding(kvChannels: 8, rotaryPercent: 1, base: 10000, scaling: config.transformer.ropeScaling)
        let plain = RotaryEmbedding(kvChannels: 8, rotaryPercent: 1, base: 10000)
        XCTAssertEqual(scaled.inverseFrequencies, plain.inverseFrequencies.map { $0 / 4 })
        // The export writes it back as transformers reads it.
        let json = HuggingFaceGPT.configJSON(architecture: .llama, config: config.transformer, vocabSize: 100,
                                             maxPositions: 32, tied: false)
        XCTAssertEqual(json["rope_scaling"] as? NSDictionary, ["rope_type": "linear", "factor": 4.0] as NSDictionary)
    }

    /// A pretrain-gpt checkpoint's `args` name its tokenizer; a converted one's `tokenizer` entry names files
    /// inside the checkpoint; a recorded file that is gone is named.
    func testRecordedTokenizerIsRead() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("recorded-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        func recording(_ args: [String: JSONValue]) -> CheckpointManifest {
            var manifest = CheckpointManifest()
            manifest.args = .object(args)
            return manifest
        }
        let pretrained = try CheckpointTokenizer.options(
            recordedIn: recording(["tokenizerType": .string("NullTokenizer"), "vocabSize": .int(60), "seqLength": .int(16)]), root: root)
        XCTAssertEqual(pretrained, TokenizerOptions(type: .null, vocabSize: 60))
        XCTAssertNil(try CheckpointTokenizer.options(recordedIn: recording(["seqLength": .int(16)]), root: root))
        XCTAssertThrowsError(try CheckpointTokenizer.options(
            recordedIn: recording(["tokenizerType": .string("GPT2BPETokenizer"), "vocabFile": .string("/nowhere/vocab.json")]),
            root: root)) { error in
            XCTAssertTrue("\(error)".contains("/nowhere/vocab.json"), "\(error)")
        }
        let record = try XCTUnwrap(try CheckpointTokenizer.recordHuggingFaceTokenizer(
            from: HuggingFaceFixtures.directory("llama"), checkpointRoot: root))
        var converting = CheckpointManifest()
        converting.tokenizer = record
        let converted = try XCTUnwrap(try CheckpointTokenizer.options(recordedIn: converting, root: root))
        XCTAssertEqual(converted.type, .huggingFace)
        XCTAssertEqual(converted.tokenizerModel, root.appendingPathComponent("tokenizer").path)
        XCTAssertEqual(try buildTokenizer(converted).eod, 2)
        XCTAssertNil(try CheckpointTokenizer.recordHuggingFaceTokenizer(from: HuggingFaceFixtures.directory("qwen2"),
                                                                        checkpointRoot: root.appendingPathComponent("other")))
    }
}
