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

    /// A sequence-parallel run on the embedded corpus ends with its sample, decoded by a model built without
    /// sequence parallelism (the KV cache does not take it); it used to trap after training.
    func testSequenceParallelRunEndsWithItsSample() throws {
        let outcome = try MegatronProcess.built().run(
            ["launch", "--threads", "--nproc-per-node", "2", "--", "pretrain-gpt", "--num-layers", "1", "--hidden-size", "32",
             "--num-attention-heads", "4", "--seq-length", "16", "--max-position-embeddings", "16", "--micro-batch-size", "2",
             "--global-batch-size", "2", "--lr", "1e-3", "--train-iters", "1", "--device", "cpu",
             "--tensor-model-parallel-size", "2", "--sequence-parallel"])
        XCTAssertEqual(outcome.status, 0, outcome.stderr)
        XCTAssertFalse(outcome.killedBySignal)
        XCTAssertTrue(outcome.stdout.contains("sample from the trained model:\n\nThe cat"), outcome.stdout)
    }
}
