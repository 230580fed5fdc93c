import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining

/// Flags real Megatron configs carry that pretrain-gpt honours as Megatron does, or accepts where they cannot
/// matter: the checkpoint-format flags without `--save` / `--load`.
final class RealConfigFlagTests: XCTestCase {
    static let required = "--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 2 --lr 1e-2 --train-iters 2"
    static let refusal = "pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):\n"

    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("real-config-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func parse(_ extra: String) throws -> ParsedCommandLine {
        try MegatronArgumentParser.parseCommandLine((Self.required + " " + extra).split(separator: " ").map(String.init))
    }

    func message(_ extra: String) -> String {
        do {
            _ = try parse(extra)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testCheckpointFormatFlagsAreAcceptedOnlyWhenNothingIsSavedOrLoaded() throws {
        let formats = "--ckpt-format torch_dist --async-save --use-persistent-ckpt-worker --dist-ckpt-strictness log_all "
            + "--ckpt-fully-parallel-load --ckpt-assume-constant-structure --non-persistent-save-interval 5"
        let parsed = try parse(formats)
        XCTAssertEqual(parsed.notes, ["> --ckpt-format torch_dist, --async-save, --use-persistent-ckpt-worker, --dist-ckpt-strictness log_all, "
            + "--ckpt-fully-parallel-load, --ckpt-assume-constant-structure, --non-persistent-save-interval 5: "
            + CommandLineParse.checkpointFormatNote])
        XCTAssertEqual(parsed.arguments, try parse("").arguments, "they change no setting")
        let refused = "  checkpoint formats (--ckpt-format): --ckpt-format torch_dist, --async-save, --use-persistent-ckpt-worker, "
            + "--dist-ckpt-strictness log_all, --ckpt-fully-parallel-load, --ckpt-assume-constant-structure, --non-persistent-save-interval 5"
        XCTAssertEqual(message(formats + " --save ckpt --save-interval 1"), Self.refusal + refused)
        XCTAssertEqual(message("--load ckpt " + formats), Self.refusal + refused, "--load given before them counts too")
        // In order with the other features of the line.
        XCTAssertEqual(message("--num-experts 2 --ckpt-format torch --fp8-format hybrid --save ckpt --save-interval 1"), Self.refusal
            + "  mixture of experts: --num-experts 2\n  checkpoint formats (--ckpt-format): --ckpt-format torch\n  FP8: --fp8-format hybrid")
        // A conversion writes a checkpoint by itself: refused without --save as well.
        XCTAssertEqual(message("--ckpt-convert-format torch --ckpt-convert-save out --ckpt-format torch"), Self.refusal
            + "  checkpoint formats (--ckpt-format): --ckpt-convert-format torch, --ckpt-convert-save out")
        XCTAssertEqual(message("--ckpt-format zarr"), "--ckpt-format must be one of torch, torch_dist, torch_dcp, fsdp_dtensor, got 'zarr'")
    }

    func testCheckpointFormatFlagsOfAYAMLFileFollowTheSameRule() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("model_config.yaml")
        try "MODEL_ARGS:\n  --ckpt-format: torch_dist\n  --async-save: true\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try parse("--yaml-cfg \(file.path)").notes.count, 1)
        XCTAssertEqual(message("--yaml-cfg \(file.path) --save ckpt --save-interval 1"),
                       Self.refusal + "  checkpoint formats (--ckpt-format): --async-save, --ckpt-format torch_dist")
    }
}
