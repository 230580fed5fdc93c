import Foundation
import XCTest

/// Megatron command lines as users paste them: refused flags named together with their features, required
/// flags, tensor parallelism without a launcher, YAML files, torchrun's spellings on `launch`, and --help.
final class FlagSurfaceTests: XCTestCase {
    let required = ["--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "16",
                    "--max-position-embeddings", "16", "--micro-batch-size", "2", "--lr", "1e-3", "--train-iters", "2"]

    func testUnsupportedFlagsAreRefusedTogetherWithTheirFeatures() throws {
        try MegatronProcess.built().assertCleanFailure(
            ["pretrain-gpt"] + required + ["--moe-input-jitter-eps", "2", "--fp8-param-gather", "--use-persistent-ckpt-worker",
                                           "--wandb-project", "x", "--context-parallel-size", "2", "--save", "ckpt", "--save-interval", "1"],
            mentions: ["mixture of experts: --moe-input-jitter-eps 2", "FP8: --fp8-param-gather",
                       "checkpoint formats (--ckpt-format): --use-persistent-ckpt-worker", "Weights & Biases logging (use --tensorboard-dir): --wandb-project x",
                       "context parallelism: --context-parallel-size 2"])
    }

    func testMissingRequiredFlagsAreNamed() throws {
        try MegatronProcess.built().assertCleanFailure(["pretrain-gpt", "--num-layers", "2"],
                                                       mentions: ["--hidden-size", "--max-position-embeddings", "--lr", "--train-iters"])
    }

    func testTensorParallelismNeedsALauncher() throws {
        try MegatronProcess.built().assertCleanFailure(["pretrain-gpt"] + required + ["--tensor-model-parallel-size", "2"],
                                                       mentions: ["--tensor-model-parallel-size 2", "megatron launch --nproc-per-node 2"])
    }

    func testBadYAMLIsNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flags-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let process = try MegatronProcess.built()
        try process.assertCleanFailure(["pretrain-gpt", "--yaml-cfg", dir.appendingPathComponent("none.yaml").path], mentions: ["none.yaml"])
        let unset = dir.appendingPathComponent("unset.yaml")
        try "MODEL_ARGS:\n  --save: ${MEGATRON_TEST_UNSET_PATH}/ckpt\n".write(to: unset, atomically: true, encoding: .utf8)
        try process.assertCleanFailure(["pretrain-gpt", "--yaml-cfg", unset.path], mentions: ["${MEGATRON_TEST_UNSET_PATH}", "unset.yaml"])
        let broken = dir.appendingPathComponent("broken.yaml")
        try "language_model: [unclosed\n".write(to: broken, atomically: true, encoding: .utf8)
        try process.assertCleanFailure(["pretrain-gpt", "--config", broken.path], mentions: ["broken.yaml", "not valid YAML"])
    }

    func testLaunchRefusesWhatItCannotDoByOption() throws {
        let process = try MegatronProcess.built()
        try process.assertCleanFailure(["launch", "--nnodes", "1:2", "pretrain-gpt"], mentions: ["--nnodes 1:2"])
        try process.assertCleanFailure(["launch", "--max_restarts", "3", "pretrain-gpt"], mentions: ["--max-restarts 3"])
        try process.assertCleanFailure(["launch", "--rdzv_endpoint", "node0:port", "pretrain-gpt"], mentions: ["--rdzv-endpoint node0:port"])
        try process.assertCleanFailure(["launch", "--rdzv_backend", "etcd", "pretrain-gpt"], mentions: ["--rdzv-backend etcd"])
        try process.assertCleanFailure(["launch", "--nproc_per_node", "2"], mentions: ["subcommand"])
    }

    /// A torchrun line with `torchrun` replaced: underscore options, no `--`, the script's name.
    func testLaunchTakesATorchrunLine() throws {
        let outcome = try MegatronProcess.built().run(["launch", "--nproc_per_node", "2", "--master_port", "29561", "--nnodes", "1",
                                                       "--node_rank", "0", "pretrain_gpt.py"] + required
                                                      + ["--global-batch-size", "4", "--log-interval", "1", "--eval-iters", "1"])
        XCTAssertEqual(outcome.status, 0, outcome.output)
        XCTAssertTrue(outcome.stdout.contains("> launch: 2 ranks as threads of this process"), outcome.output)
        XCTAssertTrue(outcome.stdout.contains("iteration        2/       2"), outcome.output)
    }

    /// `pretrain-gpt --help`, `-h` and `megatron help pretrain-gpt` print the same list of flags.
    func testHelpListsTheFlagsAllThreeWays() throws {
        let process = try MegatronProcess.built()
        var lists: [String] = []
        for arguments in [["pretrain-gpt", "--help"], ["pretrain-gpt", "--num-layers", "2", "-h"], ["help", "pretrain-gpt"]] {
            let outcome = try process.run(arguments)
            XCTAssertEqual(outcome.status, 0, outcome.output)
            let list = outcome.stdout.components(separatedBy: "transformer configuration:").dropFirst().first ?? ""
            XCTAssertTrue(list.contains("--num-layers N"), outcome.output)
            XCTAssertTrue(list.contains("--eval-iters N"), outcome.output)
            lists.append(list)
        }
        XCTAssertEqual(Set(lists).count, 1, "the three ways print different lists")
    }
}
