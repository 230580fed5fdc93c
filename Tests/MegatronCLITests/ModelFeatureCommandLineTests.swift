import XCTest

/// Model and training feature flags a user gets wrong stop the program with the flag named, not a trap.
final class ModelFeatureCommandLineTests: XCTestCase {
    let model = ["pretrain-gpt", "--num-layers", "1", "--hidden-size", "32", "--num-attention-heads", "4", "--lr", "1e-3",
                 "--seq-length", "32", "--max-position-embeddings", "32", "--micro-batch-size", "2", "--device", "cpu"]

    func testRecomputeModulesOfAbsentFeaturesAreRefusedByName() throws {
        try MegatronProcess.built().assertCleanFailure(
            model + ["--train-iters", "2", "--recompute-activations", "--recompute-modules", "core_attn", "moe"],
            mentions: ["--recompute-modules moe", "mixture of experts"])
    }

    func testRampupWithIterationsIsRefused() throws {
        try MegatronProcess.built().assertCleanFailure(
            model + ["--train-iters", "2", "--rampup-batch-size", "8", "8", "100", "--global-batch-size", "16",
                     "--micro-batch-size", "8"],
            mentions: ["--rampup-batch-size", "--train-samples"])
    }

    func testMissingCheckpointWithExitFlagStops() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("cli-no-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        try MegatronProcess.built().assertCleanFailure(
            model + ["--train-iters", "2", "--load", empty.path, "--exit-on-missing-checkpoint"],
            mentions: ["--exit-on-missing-checkpoint", empty.path])
    }
}
