import XCTest

@testable import MegatronData

final class TokenizerNullTests: XCTestCase {
    func testNullTokenizerFollowsMegatron() throws {
        let tok = try buildTokenizer(TokenizerOptions(type: .null, vocabSize: 1000))
        XCTAssertEqual(tok.vocabSize, 1000)
        XCTAssertEqual(tok.eod, 999)
        XCTAssertNil(tok.pad)
        XCTAssertEqual(try tok.encode("5 7 9"), [5, 7, 9])
        XCTAssertEqual(tok.decode([5, 7, 9]), "5 7 9")
        let custom = NullTokenizer(vocabSize: 10, eod: 3, pad: 4)
        XCTAssertEqual(custom.eod, 3)
        XCTAssertEqual(custom.pad, 4)
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .null)))
    }
}
