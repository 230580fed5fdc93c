import XCTest

@testable import MegatronData

/// The hand-written pre-tokenizer against pieces the real regexes give (worked out from Python's `regex`).
final class TokenizerPatternTests: XCTestCase {
    private func pieces(_ pattern: PreTokenizerPattern, _ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var result: [String] = []
        bytes.withUnsafeBufferPointer { buffer in
            pattern.split(buffer, range: 0..<buffer.count) { result.append(String(decoding: buffer[$0], as: UTF8.self)) }
        }
        return result
    }

    func testGPT2Pieces() {
        XCTAssertEqual(pieces(.gpt2, "Hello  world's 123\n\n x"), ["Hello", " ", " world", "'s", " 123", "\n\n", " x"])
        XCTAssertEqual(pieces(.gpt2, "a   "), ["a", "   "])
        XCTAssertEqual(pieces(.gpt2, "I'M ok"), ["I", "'", "M", " ok"])
    }

    func testCl100kPieces() {
        XCTAssertEqual(pieces(.cl100k, "I'M 12345 ok?!\n\n  x"), ["I", "'M", " ", "123", "45", " ok", "?!\n\n", " ", " x"])
        XCTAssertEqual(pieces(.cl100k, "a \n\t b"), ["a", " \n", "\t", " b"])
        XCTAssertEqual(pieces(.cl100k, "\tword"), ["\tword"])
    }

    func testMegatronV2CaseSplit() {
        XCTAssertEqual(pieces(.megatronV2, "HTTPServer camelCase"), ["HTTPServer", " camel", "Case"])
        XCTAssertEqual(pieces(.megatronV2, "ABC a/b//\n"), ["ABC", " a", "/b", "//\n"])
    }

    func testKnownRegexesAreRecognized() {
        XCTAssertEqual(PreTokenizerPattern.matching(regex: PreTokenizerPattern.knownRegexes[1].0), .cl100k)
        XCTAssertNil(PreTokenizerPattern.matching(regex: "\\w+"))
    }

    func testPaddedVocabSize() {
        XCTAssertEqual(paddedVocabSize(50257), 50304)
        XCTAssertEqual(paddedVocabSize(50257, tensorParallelSize: 8), 51200)
    }
}
