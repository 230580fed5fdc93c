import Foundation
import XCTest
import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

final class ResumeTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = scratchPath("resume") }

    func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(
            ("--num-layers 2 --hidden-size 16 --num-attention-heads 2 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
             + "--global-batch-size 4 --train-iters 6 --lr 1e-2 --lr-warmup-iters 2 --log-interval 1 --eval-iters 1 "
             + "--hidden-dropout 0.1 --attention-dropout 0.1 " + extra).split(separator: " ").map(String.init))
    }

    func losses(_ lines: [String]) -> [String] {
        lines.filter { $0.contains("] iteration ") }.map { line in
            String(line[line.range(of: "lm loss: ")!.upperBound...].prefix(12))
        }
    }

    func testResumeGivesBitwiseIdenticalLosses() throws {
        var straight: [String] = []
        _ = try Pretrainer(arguments: try arguments("")) { straight.append($0) }.run()

        var first: [String] = [], second: [String] = []
        let save = "--save \(root.path) --save-interval 100 --exit-interval 3"
        _ = try Pretrainer(arguments: try arguments(save)) { first.append($0) }.run()
        XCTAssertEqual(try CheckpointDirectory(root: root).latestIteration(), 3)
        _ = try Pretrainer(arguments: try arguments("--load \(root.path)")) { second.append($0) }.run()

        XCTAssertEqual(losses(straight).count, 6)
        XCTAssertEqual(losses(first) + losses(second), losses(straight))
        XCTAssertTrue(second.contains { $0.contains("loaded checkpoint from") })
    }

    /// Aux-loss-free routing (`--moe-router-enable-expert-bias`): the bias moves after every step and is not a
    /// parameter; saved and restored in both layouts, the resumed run routes, and so logs, as the uninterrupted one.
    func testExpertBiasResumesExactlyInBothFormats() throws {
        let moe = "--num-experts 4 --moe-router-topk 2 --moe-ffn-hidden-size 8 --moe-router-score-function sigmoid "
            + "--moe-router-enable-expert-bias --moe-router-bias-update-rate 0.05 --moe-router-load-balancing-type none --disable-bias-linear"
        var straight: [String] = []
        _ = try Pretrainer(arguments: try arguments(moe)) { straight.append($0) }.run()
        XCTAssertEqual(losses(straight).count, 6)
        for format in ["torch_dist", "safetensors"] {
            let directory = root.appendingPathComponent(format)
            var first: [String] = [], second: [String] = []
            let save = "\(moe) --ckpt-format \(format) --save \(directory.path) --save-interval 100 --exit-interval 3"
            _ = try Pretrainer(arguments: try arguments(save)) { first.append($0) }.run()
            if format == "torch_dist" {
                // Each rank's boxes under Megatron Core's MoE keys (the TE spec's name of the pre-MLP norm too).
                let keys = try DistributedCheckpointReader(directory: directory.appendingPathComponent("iter_0000003")).tensorKeys
                for key in ["decoder.layers.mlp.experts.experts.linear_fc1.weight", "decoder.layers.mlp.router.expert_bias",
                            "decoder.layers.mlp.linear_fc1.layer_norm_weight", "decoder.layers.pre_mlp_layernorm.weight"] {
                    XCTAssertTrue(keys.contains(key), "\(key) in \(keys)")
                }
            }
            _ = try Pretrainer(arguments: try arguments("\(moe) --ckpt-format \(format) --load \(directory.path)")) { second.append($0) }.run()
            XCTAssertEqual(losses(first) + losses(second), losses(straight), format)
        }
    }

    func testSaveWithoutIntervalIsRefused() throws {
        XCTAssertThrowsError(try arguments("--save /tmp/x").validate()) {
            XCTAssertEqual("\($0)", "--save-interval is required (and positive) when --save is given")
        }
    }
}
