import Foundation
import XCTest

/// The cases of `Fixtures/moe/<name>.json` (made by scripts/fixtures/make_moe_*_fixtures.py).
func loadMoEFixtureCases<Case: Decodable>(_ name: String, as type: Case.Type) throws -> [Case] {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures/moe") else {
        throw XCTSkip("Fixtures/moe/\(name).json is missing from the test bundle")
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(MoEFixtureFile<Case>.self, from: Data(contentsOf: url)).cases
}

/// A fixture file: its cases.
struct MoEFixtureFile<Case: Decodable>: Decodable {
    var cases: [Case]
}

/// Fails when an element differs by more than `tolerance`, relative to the larger of 1 and the expected value.
func assertMoEClose(_ actual: [Float], _ expected: [Float], _ tolerance: Float, _ message: String,
                    file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
    let worst = zip(actual, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst, tolerance, message, file: file, line: line)
}
