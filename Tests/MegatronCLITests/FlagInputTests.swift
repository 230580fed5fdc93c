import Foundation
import XCTest

/// Bad flag values, launcher environments and `launch` / `generate` arguments, run through the real
/// executable: each must end with a normal non-zero exit (no signal) and a message naming the flag or variable
/// and the value at fault.
final class FlagInputTests: XCTestCase {
    /// A small model that trains in a second, so each case fails on its own bad value only.
    private static let model = ["--num-layers", "1", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "16",
                                "--max-position-embeddings", "16", "--micro-batch-size", "2", "--train-iters", "2", "--lr", "1e-3"]

    /// One case: flags added to the small model's (later ones win), and what the message must name.
    private struct Case {
        var flags: String
        var mentions: [String]
        var arguments: [String] { flags.split(separator: " ").map(String.init) }
    }

    private func assertRefused(_ cases: [Case], file: StaticString = #filePath, line: UInt = #line) throws {
        let megatron = try MegatronProcess.built()
        for c in cases {
            try megatron.assertCleanFailure(["pretrain-gpt"] + Self.model + c.arguments, mentions: c.mentions, file: file, line: line)
        }
    }

    func testZeroAndNegativeSizesAndIntervals() throws {
        try assertRefused([
            "--vocab-size", "--eval-interval", "--log-interval", "--save-interval", "--global-batch-size", "--num-layers",
            "--hidden-size", "--num-attention-heads", "--seq-length", "--ffn-hidden-size", "--kv-channels",
            "--micro-batch-size", "--train-iters", "--exit-interval", "--lr-decay-iters", "--make-vocab-size-divisible-by",
        ].map { Case(flags: "\($0) 0", mentions: [$0, "got 0"]) } + [
            ("--train-iters", "-5"), ("--eval-iters", "-1"), ("--seed", "-1"),
        ].map { Case(flags: "\($0) \($1)", mentions: [$0, $1]) } + [
            Case(flags: "--group-query-attention --num-query-groups 0", mentions: ["--num-query-groups", "got 0"]),
        ])
    }

    func testRatesAndCoefficientsOutOfRange() throws {
        try assertRefused([
            ("--lr", "-1"), ("--min-lr", "-0.5"), ("--hidden-dropout", "1"), ("--attention-dropout", "-0.1"),
            ("--clip-grad", "-1"), ("--adam-beta1", "1"), ("--adam-beta2", "1.5"), ("--adam-eps", "0"),
            ("--init-method-std", "-0.02"),
        ].map { Case(flags: "\($0) \($1)", mentions: [$0, $1]) })
    }

    func testShapesThatDoNotFitTogether() throws {
        try assertRefused([
            Case(flags: "--hidden-size 30", mentions: ["--hidden-size", "30", "--num-attention-heads", "4"]),
            Case(flags: "--group-query-attention --num-query-groups 3", mentions: ["--num-query-groups", "3"]),
            Case(flags: "--seq-length 100000 --max-position-embeddings 100000", mentions: ["--seq-length", "100000", "--data-path"]),
            Case(flags: "--lr-warmup-iters 5 --lr-decay-iters 3", mentions: ["--lr-warmup-iters", "5", "--lr-decay-iters", "3"]),
            Case(flags: "--recompute-granularity full --recompute-method block --recompute-num-layers 9",
                 mentions: ["--recompute-num-layers", "9"]),
            Case(flags: "--tensor-model-parallel-size 2 --ffn-hidden-size 33", mentions: ["--ffn-hidden-size", "33"]),
            Case(flags: "--train-iters 9223372036854775807", mentions: ["--train-iters", "9223372036854775807"]),
            Case(flags: "--hidden-size 100000000000", mentions: ["--hidden-size", "100000000000"]),
            Case(flags: "--num-layers 100000000", mentions: ["does not fit", "--num-layers"]),
            Case(flags: "--micro-batch-size 100000000", mentions: ["does not fit", "--micro-batch-size"]),
        ])
    }

    /// Tensor parallelism as users run it: thread ranks under `launch`, where the ranks fail together.
    func testSequenceParallelLengthNotDivisibleByTensorParallelSize() throws {
        try MegatronProcess.built().assertCleanFailure(
            ["launch", "--threads", "--nproc-per-node", "2", "--", "pretrain-gpt"] + Self.model
                + ["--tensor-model-parallel-size", "2", "--sequence-parallel", "--seq-length", "15"],
            mentions: ["--seq-length", "15", "--sequence-parallel"])
    }

    func testMalformedLauncherEnvironment() throws {
        let megatron = try MegatronProcess.built()
        let cases: [([String: String], [String])] = [
            (["RANK": "x", "WORLD_SIZE": "2"], ["RANK", "'x'"]),
            (["RANK": "3", "WORLD_SIZE": "2"], ["RANK (3)", "WORLD_SIZE (2)"]),
            (["RANK": "0", "WORLD_SIZE": "0"], ["WORLD_SIZE", "0"]),
            (["RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"], ["LOCAL_RANK", "'-1'"]),
            (["LOCAL_RANK": "abc"], ["LOCAL_RANK", "'abc'"]),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "99999"], ["MASTER_PORT", "99999"]),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "http"], ["MASTER_PORT", "'http'"]),
            (["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": ""], ["MASTER_ADDR"]),
            (["RANK": "0"], ["WORLD_SIZE", "not set"]),
            (["SLURM_PROCID": "0", "SLURM_NTASKS": "x"], ["SLURM_NTASKS", "'x'"]),
            (["SLURM_PROCID": "4", "SLURM_NTASKS": "4"], ["SLURM_PROCID (4)", "SLURM_NTASKS (4)"]),
            (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "q"], ["SLURM_LOCALID", "'q'"]),
            (["SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODELIST": "node[1-"], ["SLURM_NODELIST", "node[1-"]),
        ]
        for (environment, mentions) in cases {
            try megatron.assertCleanFailure(["pretrain-gpt"] + Self.model, mentions: mentions, environment: environment)
        }
    }

    func testBadLaunchArguments() throws {
        let megatron = try MegatronProcess.built()
        let cases: [([String], [String])] = [
            (["--nproc-per-node", "0"], ["--nproc-per-node", "0"]),
            (["--nproc-per-node", "-2"], ["--nproc-per-node", "-2"]),
            (["--nnodes", "0"], ["--nnodes", "0"]),
            (["--nnodes", "2", "--node-rank", "5"], ["--node-rank", "5"]),
            (["--node-rank", "-1"], ["--node-rank", "-1"]),
            (["--master-port", "70000"], ["--master-port", "70000"]),
            (["--master-port", "0"], ["--master-port", "0"]),
            (["--grace-period", "-1"], ["--grace-period", "-1"]),
            (["--master-addr", ""], ["--master-addr"]),
            (["--threads", "--exec"], ["--exec", "--threads"]),
        ]
        for (flags, mentions) in cases {
            try megatron.assertCleanFailure(["launch"] + flags + ["--", "pretrain-gpt"], mentions: mentions)
        }
        try megatron.assertCleanFailure(["launch", "--nproc-per-node", "2"], mentions: ["--"])
    }

    func testBadGenerateArguments() throws {
        let megatron = try MegatronProcess.built()
        let checkpoint = FileManager.default.temporaryDirectory.appendingPathComponent("flag-input-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: checkpoint) }
        let cases: [(String, [String])] = [
            ("--top-k -1", ["--top-k", "-1"]),
            ("--temperature -1", ["--temperature", "-1"]),
            ("--tokens-to-generate 0", ["--tokens-to-generate", "0"]),
            ("--top-p 2", ["--top-p", "2"]),
        ]
        for (flags, mentions) in cases {
            try megatron.assertCleanFailure(["generate", "--load", checkpoint.path, "--prompt", "The"] + flags.split(separator: " ").map(String.init),
                                            mentions: mentions)
        }
        // A prompt whose ids lie outside the checkpoint's real vocabulary (257 byte tokens; padded to 384).
        let trained = try megatron.run(["pretrain-gpt"] + Self.model + ["--save", checkpoint.path, "--save-interval", "2", "--eval-iters", "1"])
        XCTAssertEqual(trained.status, 0, trained.output)
        try megatron.assertCleanFailure(["generate", "--load", checkpoint.path, "--prompt", "5 999", "--tokenizer-type",
                                         "NullTokenizer", "--vocab-size", "1000"],
                                        mentions: ["--prompt 1", "999", "257"])
    }
}
