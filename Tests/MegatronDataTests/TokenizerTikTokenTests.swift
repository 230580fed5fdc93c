import XCTest

@testable import MegatronData

/// Ids against `tiktoken` (fixtures from scripts/fixtures/make_tokenizer_fixtures.py).
final class TokenizerTikTokenTests: XCTestCase {
    func testCl100kMatchesTiktoken() throws {
        let fixture = try TokenizerFixtures.object("tiktoken_cl100k.json")
        let specials = (fixture["special_tokens"] as! [String: Int]).map { ($0.key, $0.value) }
        let encoding = try TikTokenEncoding(
            rankFile: TokenizerFixtures.shared("cl100k_base.tiktoken"), pattern: .cl100k, specialTokens: specials)
        let cases = TokenizerFixtures.cases(fixture)
        try TokenizerFixtures.assertMatches(cases, "cl100k", encode: encoding.encode)
        for c in cases { XCTAssertEqual(encoding.decode(c.ids), c.text) }
    }

    func testO200kPatternMatchesTiktoken() throws {
        let fixture = try TokenizerFixtures.object("tiktoken_o200k_pattern.json")
        let specials = (fixture["special_tokens"] as! [String: Int]).map { ($0.key, $0.value) }
        let encoding = try TikTokenEncoding(
            rankFile: TokenizerFixtures.shared("cl100k_base.tiktoken"), pattern: .o200k, specialTokens: specials)
        try TokenizerFixtures.assertMatches(TokenizerFixtures.cases(fixture), "o200k pattern", encode: encoding.encode)
    }

    func testMegatronPatternsMatchTiktoken() throws {
        let rankFile = try TokenizerFixtures.shared("cl100k_base.tiktoken")
        for name in ["v1", "v2"] {
            let fixture = try TokenizerFixtures.object("tiktoken_megatron_\(name).json")
            let tok = try TikTokenizer(rankFile: rankFile, pattern: name, vocabSize: fixture["vocab_size"] as! Int)
            let cases = TokenizerFixtures.cases(fixture)
            try TokenizerFixtures.assertMatches(cases, "megatron \(name)", encode: tok.encode)
            for c in cases { XCTAssertEqual(tok.decode(c.ids), c.text) }
        }
    }

    func testMegatronJSONRankListAndSpecialLayout() throws {
        let fixture = try TokenizerFixtures.object("tiktoken_small_v2.json")
        let tok = try buildTokenizer(
            TokenizerOptions(
                type: .tikToken, tokenizerModel: TokenizerFixtures.url("tiktoken_small_ranks.json").path,
                vocabSize: fixture["vocab_size"] as? Int, tiktokenPattern: "v2",
                tiktokenNumSpecialTokens: fixture["num_special_tokens"] as! Int))
        XCTAssertEqual(tok.vocabSize, 2100)
        XCTAssertEqual(tok.eod, 2)
        XCTAssertEqual(tok.bos, 1)
        XCTAssertEqual(tok.pad, 4)
        try TokenizerFixtures.assertMatches(TokenizerFixtures.cases(fixture), "small v2", encode: tok.encode)
        XCTAssertEqual(try tok.encode("</s><SPECIAL_99>"), [2, 99])
        XCTAssertEqual(tok.decode([2, 99]), "</s><SPECIAL_99>")
    }

    func testTikTokenizerRejectsBadOptions() throws {
        let ranks = try TokenizerFixtures.url("tiktoken_small_ranks.json").path
        XCTAssertThrowsError(try TikTokenizer(rankFile: ranks, pattern: "v3", vocabSize: 2100, numSpecialTokens: 100))
        // 2,000 ranks cannot fill Megatron's default 131072-id vocabulary.
        XCTAssertThrowsError(try TikTokenizer(rankFile: ranks, numSpecialTokens: 100)) { error in
            XCTAssertTrue("\(error)".contains("--vocab-size 2100"), "\(error)")
        }
        XCTAssertThrowsError(
            try TikTokenizer(rankFile: ranks, vocabSize: 2100, numSpecialTokens: 100, specialTokens: ["<s>"]))
        // A smaller vocabulary keeps only the first ranks, as Megatron cuts the list.
        let cut = try TikTokenizer(rankFile: ranks, vocabSize: 1100, numSpecialTokens: 100)
        XCTAssertEqual(cut.encoding.rankCount, 1000)
    }
}
