import Foundation
import XCTest

@testable import MegatronData

/// Golden (text, ids) cases written by scripts/fixtures/make_tokenizer_fixtures.py, and the shared data folder.
enum TokenizerFixtures {
    struct Case {
        let text: String
        let ids: [Int]
    }

    static func url(_ name: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures/tokenizers/\(name)", withExtension: nil) else {
            throw TokenizerError("missing fixture \(name); run scripts/fixtures/make_tokenizer_fixtures.py")
        }
        return url
    }

    static func object(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    static func cases(_ object: [String: Any]) -> [Case] {
        (object["cases"] as! [[String: Any]]).map { Case(text: $0["text"] as! String, ids: $0["ids"] as! [Int]) }
    }

    /// `../shared/data/tokenizers/<name>` beside the package root, or a skip when this machine lacks it.
    static func shared(_ name: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = root.deletingLastPathComponent().appendingPathComponent("shared/data/tokenizers/\(name)").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("shared tokenizer data \(path) is absent (only developer machines and CI have it)")
        }
        return path
    }

    /// Asserts that `encode` gives the reference ids for every case, naming the first few failures.
    static func assertMatches(
        _ cases: [Case], _ label: String, file: StaticString = #filePath, line: UInt = #line,
        encode: (String) throws -> [Int]
    ) rethrows {
        var failures = 0
        for c in cases {
            let got = try encode(c.text)
            if got != c.ids {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(label): \(c.text.debugDescription)\n got \(got)\nwant \(c.ids)", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(label): \(failures) of \(cases.count) cases differ", file: file, line: line)
    }
}
