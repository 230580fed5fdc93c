import XCTest
@testable import MegatronTraining

/// Every flag whose value is one of a fixed set (`--normalization LayerNorm|RMSNorm`): each listed spelling parses
/// into the value it names (shown back as the same text), and anything else is refused naming the flag and listing
/// the choices, never taken as a default.
final class FlagChoiceTests: XCTestCase {
    func parse(_ flag: String, _ value: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((ArgumentTests.required + " \(flag) \(value)").split(separator: " ").map(String.init))
    }

    func testEveryChoiceParsesAndATypoIsRefused() throws {
        let flags = PretrainFlags.all.filter { $0.takesValue && $0.metavar?.contains("|") == true }
        XCTAssertGreaterThanOrEqual(flags.count, 15)
        for flag in flags {
            let choices = flag.metavar!.split(separator: "|").map(String.init)
            for choice in choices {
                let parsed = try parse(flag.name, choice)
                if let shown = flag.defaultText(parsed) { XCTAssertEqual(shown, choice, flag.name) }
            }
            XCTAssertEqual(errorText { _ = try parse(flag.name, "typo") },
                           "\(flag.name) must be one of \(choices.joined(separator: ", ")), got 'typo'")
        }
    }
}
