import Foundation
import XCTest

@testable import MegatronData

/// SentencePiece models against the `sentencepiece` package and Megatron's own tokenizer builder (fixtures from
/// scripts/fixtures/make_sentencepiece_fixtures.py): a LLaMA-2 style BPE with byte fallback, a unigram model with
/// normalization rules, user-defined and control symbols, and a unigram model with byte fallback and whitespace
/// as suffix.
final class TokenizerSentencePieceTests: XCTestCase {
    static let models = ["bpe_llama", "unigram_rules", "unigram_suffix"]

    static func modelPath(_ name: String) throws -> String {
        try TokenizerFixtures.url("sentencepiece/\(name).model").path
    }

    static func fixture(_ name: String) throws -> [String: Any] {
        try TokenizerFixtures.object("sentencepiece/\(name).json")
    }

    private func tokenizer(_ name: String, _ kind: TokenizerOptions.Kind = .gptSentencePiece) throws -> any Tokenizer {
        try buildTokenizer(TokenizerOptions(type: kind, tokenizerModel: Self.modelPath(name)))
    }

    func testEncodeAndDecodeMatchSentencepiece() throws {
        for name in Self.models {
            let fixture = try Self.fixture(name)
            let tok = try tokenizer(name)
            let cases = fixture["cases"] as! [[String: Any]]
            try TokenizerFixtures.assertMatches(TokenizerFixtures.cases(fixture), name, encode: tok.encode)
            for c in cases {
                XCTAssertEqual(tok.decode(c["ids"] as! [Int]), c["decoded"] as! String, "\(name): \((c["text"] as! String).debugDescription)")
            }
            for d in fixture["decodes"] as! [[String: Any]] {
                XCTAssertEqual(tok.decode(d["ids"] as! [Int]), d["text"] as! String, "\(name): decode \(d["ids"]!)")
            }
        }
    }

    func testVocabularyAndSpecialIdsMatchMegatronsBuildTokenizer() throws {
        for name in Self.models {
            let fixture = try Self.fixture(name)
            let megatron = fixture["megatron"] as! [String: [String: Any]]
            XCTAssertEqual(Set(megatron.keys), ["GPTSentencePieceTokenizer", "Llama2Tokenizer", "SentencePieceTokenizer"])
            for (type, want) in megatron {
                let kind = try XCTUnwrap(TokenizerOptions.Kind(rawValue: type))
                let tok = try tokenizer(name, kind)
                let label = "\(name) as \(type)"
                XCTAssertEqual(tok.vocabSize, want["vocab_size"] as! Int, label)
                XCTAssertEqual(paddedVocabSize(tok.vocabSize), want["padded_vocab_size"] as! Int, label)
                XCTAssertEqual(tok.eod, want["eod"] as! Int, label)
                XCTAssertEqual(tok.bos ?? -1, want["bos"] as! Int, label)
                XCTAssertEqual(tok.pad ?? -1, want["pad"] as! Int, label)
                let texts = (fixture["cases"] as! [[String: Any]]).prefix((want["tokenized"] as! [Any]).count).map { $0["text"] as! String }
                XCTAssertEqual(try texts.map(tok.encode), want["tokenized"] as! [[Int]], label)
                XCTAssertEqual(try texts.map { tok.decode(try tok.encode($0)) }, want["detokenized"] as! [String], label)
                let identifiers = megatronTokenizerIdentifiers(TokenizerOptions(type: kind, tokenizerModel: "<model>"))
                XCTAssertEqual(identifiers.dumps(), want["unique_identifiers"] as! String, label)
            }
        }
    }

    /// The first documents of the shared corpus (skipped where it is absent), and texts that are one long run each.
    func testCorpusAndLongRunsMatchSentencepiece() throws {
        for name in Self.models {
            let fixture = try Self.fixture(name)
            let tok = try tokenizer(name)
            let long = fixture["long_pieces"] as! [String: Any]
            let ids = try (long["texts"] as! [String]).flatMap(tok.encode)
            XCTAssertEqual(ids.count, long["tokens"] as! Int, name)
            XCTAssertEqual(String(TokenizerCorpusTests.digest(ids)), long["fnv64"] as! String, name)
        }
        let documents = try TokenizerCorpusTests.documents()
        for name in Self.models {
            let want = try Self.fixture(name)["corpus"] as! [String: Any]
            let tok = try tokenizer(name)
            let ids = try documents.prefix(want["documents"] as! Int).flatMap(tok.encode)
            XCTAssertEqual(ids.count, want["tokens"] as! Int, name)
            XCTAssertEqual(String(TokenizerCorpusTests.digest(ids)), want["fnv64"] as! String, name)
        }
    }
}
