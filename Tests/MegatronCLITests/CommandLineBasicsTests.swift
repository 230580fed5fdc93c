import XCTest

/// The program's own surface: an unknown subcommand or flag is a clear error.
final class CommandLineBasicsTests: XCTestCase {
    func testUnknownSubcommandIsNamed() throws {
        try MegatronProcess.built().assertCleanFailure(["pretrain-gtp"], mentions: ["pretrain-gtp"])
    }

    func testMisspelledFlagGetsTheNearestSpelling() throws {
        try MegatronProcess.built().assertCleanFailure(["pretrain-gpt", "--num-layer", "2"],
                                                       mentions: ["--num-layer", "--num-layers"])
    }
}
