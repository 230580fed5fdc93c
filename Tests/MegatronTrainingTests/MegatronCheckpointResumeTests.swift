import Foundation
import XCTest
import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// pretrain-gpt resumes from checkpoints Megatron-LM wrote (MegatronCoreTests' fixtures, from Megatron Core's own
/// save: a 2-layer GPT at iteration 7 with 56 samples consumed). (Saving and resuming torch_dist, the default, is
/// what ResumeTests and TensorParallelPretrainTests do.)
final class MegatronCheckpointResumeTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("MegatronCoreTests/Fixtures/megatron")

    /// The fixture's model, on the embedded corpus (257 byte tokens, padded to the fixture's 384).
    func train(_ extra: String) throws -> (lines: [String], summary: Pretrainer.Summary) {
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 2 --hidden-size 16 --num-attention-heads 4 --ffn-hidden-size 64 --seq-length 8 --max-position-embeddings 8 "
             + "--micro-batch-size 2 --global-batch-size 8 --lr 1e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 "
             + "--hidden-dropout 0 --attention-dropout 0 --device cpu " + extra)
                .split(separator: " ").map(String.init))
        var lines: [String] = []
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        return (lines, summary)
    }

    func testResumesFromMegatronsTorchDistAndTorchCheckpoints() throws {
        for format in ["torch_dist", "torch"] {
            let load = Self.fixtures.appendingPathComponent(format).path
            let (lines, summary) = try train("--train-iters 8 --load \(load)")
            XCTAssertEqual(summary.iterations, 8, format)
            XCTAssertEqual(summary.intervalLosses.count, 1, "\(format): iteration 8 only")
            XCTAssertTrue(lines.contains { $0.contains("a Megatron-LM \(format) checkpoint") && $0.contains("not") }, "\(format): \(lines)")
            XCTAssertTrue(lines.contains { $0.contains("consumed samples:") && $0.contains("64") }, "56 + 8 samples: \(lines)")
        }
        let (_, finetuned) = try train("--train-iters 1 --finetune --load \(Self.fixtures.appendingPathComponent("torch_dist").path)")
        XCTAssertEqual(finetuned.intervalLosses.count, 1, "--finetune starts at iteration 0")
    }
}
