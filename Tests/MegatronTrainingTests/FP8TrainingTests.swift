import Foundation
import XCTest
import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// `pretrain-gpt --fp8-format ...` on the CPU, where the FP8 GEMMs run as their reference (quantized operands,
/// fp32 products): it trains as BF16 does, and a run resumed from a checkpoint saved mid-run repeats the
/// uninterrupted one, the delayed scales' amax histories included.
final class FP8TrainingTests: XCTestCase {
    static let tiny = "--num-layers 3 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 2 --lr 3e-3 --log-interval 1 --eval-iters 1 --hidden-dropout 0 --attention-dropout 0 --bf16 "

    func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((Self.tiny + extra).split(separator: " ").map(String.init))
    }

    func testHybridFP8TrainsLikeBF16() throws {
        let bf16 = try Pretrainer(arguments: try arguments("--train-iters 8")) { _ in }.run().intervalLosses
        for recipe in ["delayed", "tensorwise"] {
            var lines: [String] = []
            let fp8 = try Pretrainer(arguments: try arguments("--train-iters 8 --fp8-format hybrid --fp8-recipe \(recipe)")) {
                lines.append($0)
            }.run().intervalLosses
            XCTAssertTrue(lines.contains { $0.contains("> FP8: --fp8-format hybrid --fp8-recipe \(recipe), 12 linear layers") }, "\(lines)")
            XCTAssertEqual(fp8.count, 8)
            XCTAssertLessThan(fp8.last!, fp8.first! - 0.3, "\(recipe) trains: \(fp8)")
            XCTAssertNotEqual(fp8, bf16, "\(recipe): the GEMMs ran in FP8")
            for (f, b) in zip(fp8, bf16) { XCTAssertEqual(f, b, accuracy: 0.005 * b, "\(recipe): fp8 \(fp8) bf16 \(bf16)") }
        }
    }

    func testFP8ResumeRepeatsTheUninterruptedRun() throws {
        let root = scratchPath("fp8-resume")
        let fp8 = "--train-iters 4 --fp8-format hybrid --fp8-amax-history-len 4 --fp8-amax-compute-algo max --fp8-margin 1 "
        func losses(_ extra: String) throws -> [Double] { try Pretrainer(arguments: try arguments(fp8 + extra)) { _ in }.run().intervalLosses }
        let straight = try losses("")
        let first = try losses("--save \(root.path) --save-interval 100 --exit-interval 2")
        let manifest = try XCTUnwrap(try CheckpointDirectory(root: root).openLatestSharded()?.checkpoint.metadata.manifest())
        let states = try XCTUnwrap(manifest.fp8Scaling)
        XCTAssertEqual(states.count, 3 * 4 * 3, "3 layers x 4 linear layers x input, weight, grad_output")
        XCTAssertEqual(states["decoder.layers.2.mlp.linear_fc2.grad_output"]?.amaxHistory.count, 4)
        XCTAssertNotEqual(states["decoder.layers.0.self_attention.linear_qkv.input"]?.scale, 1)
        let second = try losses("--load \(root.path)")
        XCTAssertEqual(first + second, straight)
    }
}
