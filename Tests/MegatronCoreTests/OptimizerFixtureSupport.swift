import Foundation
import XCTest

/// Loads `Fixtures/optim/<name>.json` (made by scripts/fixtures/make_optim_fixtures.py) into `T`.
func loadOptimFixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
    guard let url = Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures/optim") else {
        throw XCTSkip("fixture Fixtures/optim/\(name).json is missing from the test bundle")
    }
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(T.self, from: Data(contentsOf: url))
}

/// The fixed problem of the optimizer fixtures; the same formulas as `initial_value` and
/// `gradient_value` in the generator, exact in fp32.
enum OptimizerFixtureProblem {
    static func initialValue(_ k: Int, _ i: Int) -> Float {
        Float((i * 5 + k * 3) % 11 - 5) / 8
    }

    static func gradientValue(_ k: Int, _ i: Int, step t: Int) -> Float {
        Float((i * 7 + t * 13 + k * 5) % 17 - 8) / 16 * Float(sign: .plus, exponent: -k, significand: 1)
    }

    static func gradient(_ k: Int, count: Int, step t: Int) -> [Float] {
        (0..<count).map { gradientValue(k, $0, step: t) }
    }
}

/// Fails when `actual` and `expected` differ by more than `relative` of `expected` plus `absolute`,
/// and returns the largest relative and absolute differences seen (for the report).
@discardableResult
func assertClose(_ actual: [Float], _ expected: [Double], relative: Double, absolute: Double = 0,
                 _ message: String, file: StaticString = #filePath,
                 line: UInt = #line) -> (relative: Double, absolute: Double) {
    XCTAssertEqual(actual.count, expected.count, "\(message): length", file: file, line: line)
    var worst = (relative: 0.0, absolute: 0.0)
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let difference = abs(Double(a) - e)
        if e != 0 { worst.relative = max(worst.relative, difference / abs(e)) }
        worst.absolute = max(worst.absolute, difference)
        if difference > relative * abs(e) + absolute {
            XCTFail("\(message)[\(i)]: \(a) vs expected \(e)", file: file, line: line)
            return worst
        }
    }
    return worst
}

func assertClose(_ actual: Double, _ expected: Double, relative: Double, _ message: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertLessThanOrEqual(abs(actual - expected), relative * abs(expected) + 1e-300,
                             "\(message): \(actual) vs expected \(expected)", file: file, line: line)
}
