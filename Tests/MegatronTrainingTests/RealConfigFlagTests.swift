import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// Flags real Megatron configs carry that pretrain-gpt honours as Megatron does, or accepts where they cannot
/// matter: the checkpoint-format flags without `--save` / `--load`, `--save-retain-interval`,
/// `--padded-vocab-size`, and the profiling and fp32-reduction flags that change nothing here.
final class RealConfigFlagTests: XCTestCase {
    static let required = "--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 2 --lr 1e-2 --train-iters 2"
    static let refusal = "pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):\n"

    var root: URL!

    override func setUpWithError() throws { root = scratchPath("real-config") }

    func parse(_ extra: String) throws -> ParsedCommandLine {
        try MegatronArgumentParser.parseCommandLine((Self.required + " " + extra).split(separator: " ").map(String.init))
    }

    func message(_ extra: String) -> String { errorText { _ = try parse(extra) } }

    func testCheckpointFormatFlagsAreAcceptedOnlyWhenNothingIsSavedOrLoaded() throws {
        let formats = "--ckpt-format torch_dist --use-persistent-ckpt-worker --dist-ckpt-strictness log_all "
            + "--ckpt-fully-parallel-load --ckpt-assume-constant-structure --non-persistent-save-interval 5"
        let parsed = try parse(formats)
        // --ckpt-format torch_dist is implemented (the default); the rest are not.
        XCTAssertEqual(parsed.notes, ["> --use-persistent-ckpt-worker, --dist-ckpt-strictness log_all, "
            + "--ckpt-fully-parallel-load, --ckpt-assume-constant-structure, --non-persistent-save-interval 5: "
            + CommandLineParse.checkpointFormatNote])
        XCTAssertEqual(parsed.arguments, try parse("").arguments, "they change no setting")
        let refused = "  checkpoint formats (--ckpt-format): --use-persistent-ckpt-worker, "
            + "--dist-ckpt-strictness log_all, --ckpt-fully-parallel-load, --ckpt-assume-constant-structure, --non-persistent-save-interval 5"
        XCTAssertEqual(message(formats + " --save ckpt --save-interval 1"), Self.refusal + refused)
        XCTAssertEqual(message("--load ckpt " + formats), Self.refusal + refused, "--load given before them counts too")
        // In order with the other features of the line.
        XCTAssertEqual(message("--moe-input-jitter-eps 2 --ckpt-assume-constant-structure --fp8-param-gather --save ckpt --save-interval 1"), Self.refusal
            + "  mixture of experts: --moe-input-jitter-eps 2\n  checkpoint formats (--ckpt-format): --ckpt-assume-constant-structure\n  FP8: --fp8-param-gather")
        // Megatron's legacy torch format is read, not written.
        XCTAssertEqual(message("--ckpt-format torch --save ckpt --save-interval 1"), Self.refusal
            + "  checkpoint formats (--ckpt-format): --ckpt-format torch")
        XCTAssertEqual(try parse("--ckpt-format torch").notes.count, 1, "accepted with the note when nothing is saved or loaded")
        // A conversion writes a checkpoint by itself: refused without --save as well.
        XCTAssertEqual(message("--ckpt-convert-format torch --ckpt-convert-save out --ckpt-format torch"), Self.refusal
            + "  checkpoint formats (--ckpt-format): --ckpt-convert-format torch, --ckpt-convert-save out")
        XCTAssertEqual(message("--ckpt-format zarr"), "--ckpt-format must be one of torch_dist, safetensors, got 'zarr'")
        XCTAssertEqual(try parse("--ckpt-format safetensors --save ckpt --save-interval 1").arguments.ckptFormat, .safetensors)
        XCTAssertEqual(try parse("--save ckpt --save-interval 1").arguments.ckptFormat, .torchDist, "Megatron's default")
    }

    func testCheckpointFormatFlagsOfAYAMLFileFollowTheSameRule() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("model_config.yaml")
        try "MODEL_ARGS:\n  --ckpt-format: torch_dist\n  --ckpt-assume-constant-structure: true\n  --dist-ckpt-strictness: log_all\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try parse("--yaml-cfg \(file.path)").notes.count, 1)
        XCTAssertEqual(message("--yaml-cfg \(file.path) --save ckpt --save-interval 1"),
                       Self.refusal + "  checkpoint formats (--ckpt-format): --ckpt-assume-constant-structure, --dist-ckpt-strictness log_all")
    }

    /// PyYAML (Megatron's reader) keeps the last value of a key written twice; so does pretrain-gpt, and says so.
    func testAKeyWrittenTwiceInAYAMLFileTakesTheLastValue() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("model_config.yaml")
        try """
            ENV_VARS:
              NCCL_ALGO: Ring
            MODEL_ARGS:
              --num-layers: 3
              --data-path:
                - 0.5
                - a
              --hidden-size: 32
              --num-layers: 2
              --data-path: [1.0, b]
            """.write(to: file, atomically: true, encoding: .utf8)
        let parsed = try parse("--yaml-cfg \(file.path)")
        XCTAssertEqual(parsed.arguments.numLayers, 1, "the command line still wins over the file")
        XCTAssertEqual(parsed.arguments.hiddenSize, 16)
        XCTAssertEqual(parsed.arguments.dataPath, ["1.0", "b"], "the earlier key's nested list is dropped with it")
        XCTAssertEqual(parsed.notes.first, "> --yaml-cfg \(file.path): written twice, the last value counts (as PyYAML reads it): "
            + "--num-layers, --data-path")
        let parsedAlone = try MegatronArgumentParser.parseCommandLine(["--yaml-cfg", file.path, "--hidden-size", "16",
                                                                       "--num-attention-heads", "2", "--seq-length", "16",
                                                                       "--max-position-embeddings", "16", "--micro-batch-size", "2",
                                                                       "--lr", "1e-2", "--train-iters", "2"])
        XCTAssertEqual(parsedAlone.arguments.numLayers, 2)
        XCTAssertEqual(YAMLDuplicateKeys.keepingLast("a:\n  x: 1\n  x: 2\nb:\n  x: 3\n- x: 4\n").keys, ["x"])
        XCTAssertEqual(YAMLDuplicateKeys.keepingLast("a:\n  x: 1\n  x: 2\nb:\n  x: 3\n").text, "a:\n  x: 2\nb:\n  x: 3\n")
    }

    func testProfilingAndFP32ReductionFlagsAreAcceptedWithWhatTheyDoHere() throws {
        let parsed = try parse("--profile --profile-step-start 4 --profile-step-end 6 --accumulate-allreduce-grads-in-fp32")
        XCTAssertEqual(parsed.notes, ["> --profile, --profile-step-start 4, --profile-step-end 6: " + PretrainFlags.profileNote,
                                      "> --accumulate-allreduce-grads-in-fp32: no effect: gradients are accumulated and reduced "
                                          + "in fp32 here, as the flag asks (--grad-reduce-in-bf16 wins, as in Megatron)"])
        XCTAssertEqual(parsed.arguments, try parse("").arguments)
        XCTAssertEqual(message("--profile-step-start x"), "--profile-step-start needs an integer, got 'x'")
        XCTAssertTrue(try parse("--bf16 --grad-reduce-in-bf16").arguments.gradReduceInBF16)
    }

    /// As Megatron's `save_checkpoint`: after each save, the checkpoint the tracker named before goes unless its
    /// iteration is a multiple of the interval; the newest always stays.
    func testSaveRetainIntervalKeepsMultiplesAndTheNewest() throws {
        var lines: [String] = []
        let args = try parse("--train-iters 7 --global-batch-size 2 --eval-iters 1 --device cpu --save \(root.path) --save-interval 1 "
            + "--save-retain-interval 3").arguments
        _ = try Pretrainer(arguments: args) { lines.append($0) }.run()
        XCTAssertEqual(try CheckpointDirectory(root: root).iterations(), [3, 6, 7])
        let deleted = lines.filter { $0.contains("successfully deleted checkpoint") }
        XCTAssertEqual(deleted, [1, 2, 4, 5].map { "  successfully deleted checkpoint from iteration \(String(format: "%7d", $0)) at \(root.path)" })
        XCTAssertThrowsError(try parse("--save ckpt --save-interval 2 --save-retain-interval 3").arguments.validate()) {
            XCTAssertEqual("\($0)", "--save-retain-interval (3) must be a positive multiple of --save-interval (2)")
        }
    }

    /// The model gets exactly `--padded-vocab-size` rows and Megatron's padding line is not printed; a size that
    /// cannot hold the tokenizer's tokens (257 bytes on the built-in corpus) or split over TP is refused.
    func testPaddedVocabSizeIsTheModelsVocabulary() throws {
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: try parse("--padded-vocab-size 300 --device cpu --eval-iters 1").arguments) { lines.append($0) }
        XCTAssertEqual(trainer.model.vocabSize, 300)
        XCTAssertFalse(lines.contains { $0.contains("padded vocab") }, lines.joined(separator: "\n"))
        XCTAssertThrowsError(try Pretrainer(arguments: try parse("--padded-vocab-size 256 --device cpu").arguments) { _ in }) {
            XCTAssertEqual("\($0)", "--padded-vocab-size 256 must hold the tokenizer's 257 tokens and be a multiple of the tensor-parallel size (1)")
        }
        XCTAssertThrowsError(try parse("--padded-vocab-size 0").arguments.validate()) {
            XCTAssertEqual("\($0)", "--padded-vocab-size must be a positive integer, got 0")
        }
    }
}
