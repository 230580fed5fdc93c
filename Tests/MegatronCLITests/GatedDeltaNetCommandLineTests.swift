import XCTest

/// A Gated DeltaNet hybrid trained from the command line on the CPU, and what `generate` says of its checkpoint.
final class GatedDeltaNetCommandLineTests: XCTestCase {
    let hybrid = ["pretrain-gpt", "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--lr", "1e-3",
                  "--seq-length", "32", "--max-position-embeddings", "32", "--micro-batch-size", "2", "--device", "cpu",
                  "--swiglu", "--attention-output-gate", "--experimental-attention-variant", "gated_delta_net",
                  "--linear-attention-freq", "2", "--linear-key-head-dim", "8", "--linear-value-head-dim", "8",
                  "--linear-num-key-heads", "2", "--linear-num-value-heads", "4", "--train-iters", "2", "--log-interval", "1",
                  "--eval-iters", "1", "--eval-interval", "1000"]

    func testHybridTrainsTwoIterationsAndGenerationRefusesItsCheckpoint() throws {
        let save = FileManager.default.temporaryDirectory.appendingPathComponent("cli-gdn-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: save) }
        let megatron = try MegatronProcess.built()
        let outcome = try megatron.run(hybrid + ["--save", save.path, "--save-interval", "2"])
        XCTAssertEqual(outcome.status, 0, outcome.output)
        XCTAssertTrue(outcome.output.contains(" iteration        2/       2 |"), outcome.output)
        XCTAssertFalse(outcome.output.contains("lm loss: nan") || outcome.output.contains("lm loss: inf"), outcome.output)
        try megatron.assertCleanFailure(["generate", "--load", save.path, "--prompt", "The", "--device", "cpu"],
                                        mentions: [save.path, "Gated DeltaNet"])
    }

    func testVariantWithoutItsLayerPatternIsRefused() throws {
        var withoutPattern = hybrid
        let flag = withoutPattern.firstIndex(of: "--linear-attention-freq")!
        withoutPattern.removeSubrange(flag...flag + 1)
        try MegatronProcess.built().assertCleanFailure(withoutPattern, mentions: ["--linear-attention-freq"])
    }
}
