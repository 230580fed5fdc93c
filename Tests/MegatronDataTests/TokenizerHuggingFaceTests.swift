import Foundation
import XCTest

@testable import MegatronData

/// Ids against Hugging Face `tokenizers` (fixtures from scripts/fixtures/make_tokenizer_fixtures.py).
final class TokenizerHuggingFaceTests: XCTestCase {
    func testByteLevelTokenizerJSONMatchesTokenizers() throws {
        let tok = try buildTokenizer(
            TokenizerOptions(type: .huggingFace, tokenizerModel: TokenizerFixtures.shared("bytelevel-bpe-8k")))
        XCTAssertEqual(tok.eod, 0)
        XCTAssertEqual(tok.vocabSize, 8192)
        let cases = TokenizerFixtures.cases(try TokenizerFixtures.object("hf_bytelevel_8k.json"))
        try TokenizerFixtures.assertMatches(cases, "bytelevel-8k", encode: tok.encode)
        for c in cases { XCTAssertEqual(tok.decode(c.ids), c.text) }
    }

    func testGPT2BPEFilesGiveTheSameIds() throws {
        let dir = try TokenizerFixtures.shared("bytelevel-bpe-8k")
        let tok = try buildTokenizer(
            TokenizerOptions(type: .gpt2BPE, vocabFile: dir + "/vocab.json", mergeFile: dir + "/merges.txt"))
        XCTAssertEqual(tok.eod, 0)
        XCTAssertEqual(tok.vocabSize, 8192)
        let cases = TokenizerFixtures.cases(try TokenizerFixtures.object("hf_bytelevel_8k.json"))
        try TokenizerFixtures.assertMatches(cases, "gpt2 vocab/merges", encode: tok.encode)
        for c in cases { XCTAssertEqual(tok.decode(c.ids), c.text) }
    }

    /// LLaMA-3 and Qwen-2 style: a Split regex then ByteLevel without its own regex (Qwen-2 adds NFC); and
    /// ByteLevel with `add_prefix_space`.
    func testSplitRegexPreTokenizersMatchTokenizers() throws {
        let path = try TokenizerFixtures.shared("bytelevel-bpe-8k/tokenizer.json")
        for style in ["llama3", "qwen2", "prefix_space"] {
            let fixture = try TokenizerFixtures.object("hf_bytelevel_8k_\(style).json")
            var spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            spec["pre_tokenizer"] = fixture["pre_tokenizer"]
            spec["normalizer"] = fixture["normalizer"]
            let tok = try HuggingFaceTokenizer(spec: spec, config: [:])
            try TokenizerFixtures.assertMatches(TokenizerFixtures.cases(fixture), style, encode: tok.encode)
        }
    }

    func testLlamaStyleByteFallbackMatchesTokenizers() throws {
        let tok = try buildTokenizer(
            TokenizerOptions(type: .huggingFace, tokenizerModel: TokenizerFixtures.url("llama_style").path))
        XCTAssertEqual(tok.eod, 2)
        XCTAssertEqual(tok.bos, 1)
        let fixture = try TokenizerFixtures.object("hf_llama_style.json")
        let cases = TokenizerFixtures.cases(fixture)
        try TokenizerFixtures.assertMatches(cases, "llama-style", encode: tok.encode)
        for (c, decoded) in zip(cases, fixture["decoded"] as! [String]) { XCTAssertEqual(tok.decode(c.ids), decoded) }
    }

    func testMetaspacePreTokenizerMatchesTokenizers() throws {
        let path = try TokenizerFixtures.url("llama_style/tokenizer.json")
        let fixture = try TokenizerFixtures.object("hf_metaspace_style.json")
        var spec = try JSONSerialization.jsonObject(with: Data(contentsOf: path)) as! [String: Any]
        for key in ["normalizer", "pre_tokenizer", "decoder"] { spec[key] = fixture[key] }
        let tok = try HuggingFaceTokenizer(spec: spec, config: ["eos_token": "</s>"])
        let cases = TokenizerFixtures.cases(fixture)
        try TokenizerFixtures.assertMatches(cases, "metaspace", encode: tok.encode)
        for (c, decoded) in zip(cases, fixture["decoded"] as! [String]) { XCTAssertEqual(tok.decode(c.ids), decoded) }
    }

    func testUnsupportedFieldsAreNamed() throws {
        let path = try TokenizerFixtures.url("llama_style/tokenizer.json")
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: path)) as! [String: Any]
        let cases: [(String, Any, String)] = [
            ("pre_tokenizer", ["type": "Whitespace"], "Whitespace"),
            ("pre_tokenizer", ["type": "Split", "pattern": ["Regex": "\\d+"], "behavior": "Isolated"], "\\d+"),
            ("normalizer", ["type": "NFD"], "NFD"),
            ("decoder", ["type": "WordPiece"], "WordPiece"),
            ("post_processor", ["type": "RobertaProcessing"], "RobertaProcessing"),
            ("model", ["type": "Unigram"], "Unigram"),
        ]
        for (key, value, name) in cases {
            var spec = base
            spec[key] = value
            XCTAssertThrowsError(try HuggingFaceTokenizer(spec: spec, config: ["eos_token": "</s>"])) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error) should name \(name)")
            }
        }
        XCTAssertThrowsError(try HuggingFaceTokenizer(path: "/nonexistent/tokenizer"))
    }
}
