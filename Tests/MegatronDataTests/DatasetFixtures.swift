import Foundation
import XCTest
@testable import MegatronData
import MegatronTestSupport

/// Locations of the committed fixtures (made by scripts/fixtures/make_dataset_fixtures.py from
/// Megatron-LM's own code) and scratch directories for tests.
enum DatasetFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/datasets").path

    static func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name)))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// A fresh empty directory, removed when the test ends.
    static func scratch(_ test: XCTestCase) throws -> String { try test.scratchDirectory("megatron-data").path }

    /// The tokenizer the fixtures were made with: vocabulary 1000, EOD 999, no pad.
    static let tokenizer = DatasetTokenizerInfo(
        vocabSize: 1000, eod: 999, pad: nil,
        identifiers: .object([("class", .string("FixtureTokenizer")), ("vocab_size", .int(1000)), ("eod_id", .int(999))]))
}

/// NullTokenizer's rule (integers separated by spaces), for preprocess tests that need no vocabulary files.
struct SpaceSeparatedIDsTokenizer: Tokenizer {
    var vocabSize = 1000
    var eod = 999
    var bos: Int? { nil }
    var pad: Int? { nil }
    func encode(_ text: String) -> [Int] { text.split(separator: " ", omittingEmptySubsequences: false).map { Int($0) ?? -1 } }
    func decode(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: " ") }
}
