import Foundation
import XCTest

@testable import MegatronData

/// Every document of the shared 3 MB corpus, encoded one by one, against the reference tokenizers' token count
/// and FNV-1a digest of the ids (scripts/fixtures/make_tokenizer_fixtures.py, `corpus_digests`); likewise for
/// a few texts that are one very long piece each.
final class TokenizerCorpusTests: XCTestCase {
    /// The documents of the shared corpus, or a skip when this machine lacks it.
    static func documents() throws -> [String] {
        let tokenizers = try TokenizerFixtures.shared("cl100k_base.tiktoken")
        let path = URL(fileURLWithPath: tokenizers).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("corpus/docs-3mb.jsonl")
        let data = try Data(contentsOf: path)
        return try data.split(separator: UInt8(ascii: "\n")).map {
            (try JSONSerialization.jsonObject(with: Data($0)) as! [String: Any])["text"] as! String
        }
    }

    /// FNV-1a over the ids as little-endian 32-bit words: a short digest of a long id list.
    static func digest(_ ids: [Int]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for id in ids {
            for k in 0..<4 { h = (h ^ UInt64((UInt32(id) >> (8 * k)) & 0xFF)) &* 0x100_0000_01b3 }
        }
        return h
    }

    private func check(_ name: String, _ encode: (String) -> [Int], _ decode: ([Int]) -> String) throws {
        try check(name, Self.documents(), encode, decode)
        // Thousands of symbols in one piece: the heap merge, against the same references.
        let longPieces = try TokenizerFixtures.object("corpus_digests.json")["long_pieces"] as! [String]
        try check(name + " long_pieces", longPieces, encode, decode)
    }

    private func check(
        _ name: String, _ texts: [String], _ encode: (String) -> [Int], _ decode: ([Int]) -> String
    ) throws {
        let want = try TokenizerFixtures.object("corpus_digests.json")[name] as! [String: Any]
        var all: [Int] = []
        for document in texts {
            let ids = encode(document)
            XCTAssertEqual(decode(ids), document)
            all += ids
        }
        XCTAssertEqual(all.count, want["tokens"] as! Int, name)
        XCTAssertEqual(String(Self.digest(all)), want["fnv64"] as! String, name)
    }

    func testCl100kOnCorpusMatchesTiktoken() throws {
        let encoding = try TikTokenEncoding(
            rankFile: TokenizerFixtures.shared("cl100k_base.tiktoken"), pattern: .cl100k,
            specialTokens: [("<|endoftext|>", 100257)])
        try check("cl100k", encoding.encode, encoding.decode)
    }

    func testByteLevelOnCorpusMatchesTokenizers() throws {
        let tok = try HuggingFaceTokenizer(path: TokenizerFixtures.shared("bytelevel-bpe-8k"))
        try check("bytelevel-bpe-8k", tok.encode, tok.decode)
    }
}
