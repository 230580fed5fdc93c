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

    /// The checkpoints Megatron-LM wrote after training with Adam (`make_megatron_checkpoints.py resume`): pretrain-gpt
    /// with the same schedule carries their optimizer state; MegatronCoreTests' MegatronResumeTests checks it gives
    /// Megatron's next losses.
    func testResumesMegatronsOptimizerState() throws {
        let schedule = "--train-iters 10 --lr-warmup-iters 2 --lr-decay-iters 10 --lr-decay-style cosine --min-lr 1e-4 --weight-decay 0.1 "
            + "--adam-beta2 0.95 --clip-grad 1 --global-batch-size 2 --micro-batch-size 2"
        for layout in ["dist_dp_reshardable", "dist_fully_reshardable", "adam_torch_dist", "adam_torch"] {
            let load = Self.fixtures.appendingPathComponent("resume/\(layout)").path
            let (lines, summary) = try train("\(schedule) --load \(load)")
            XCTAssertEqual(summary.iterations, 10, layout)
            XCTAssertTrue(lines.contains { $0.contains("so are its optimizer state") }, "\(layout): \(lines)")
        }
    }

    /// The same run under `--bf16` (each layout's fp32 main copies) and `--fp16` (the dynamic loss scaler's state too,
    /// saved at 131072 with one clean step toward the growth window of 2, so the next iteration doubles it, where a
    /// fresh scaler would log 65536); MegatronResumeTests checks both give Megatron's next losses.
    func testResumesMegatronsBF16AndFP16OptimizerState() throws {
        let schedule = "--train-iters 10 --lr-warmup-iters 2 --lr-decay-iters 10 --lr-decay-style cosine --min-lr 1e-4 --weight-decay 0.1 "
            + "--adam-beta2 0.95 --clip-grad 1 --global-batch-size 2 --micro-batch-size 2"
        for layout in ["dist_dp_reshardable", "dist_fully_reshardable", "adam_torch_dist", "adam_torch"] {
            let (lines, summary) = try train("\(schedule) --bf16 --load \(Self.fixtures.appendingPathComponent("resume/bf16/\(layout)").path)")
            XCTAssertEqual(summary.iterations, 10, layout)
            XCTAssertTrue(lines.contains { $0.contains("so are its optimizer state") }, "\(layout): \(lines)")
        }
        for layout in ["dist_dp_reshardable", "adam_torch"] {
            let load = Self.fixtures.appendingPathComponent("resume/fp16/\(layout)").path
            let (lines, _) = try train("\(schedule) --fp16 --initial-loss-scale 65536 --loss-scale-window 2 --load \(load)")
            XCTAssertTrue(lines.contains { $0.contains("with its loss scale 131072") }, "\(layout): \(lines)")
            XCTAssertTrue(lines.contains { $0.contains("iteration        4/") && $0.contains("loss scale: 262144.0 |") }, "\(layout): \(lines)")
        }
    }

    /// Optimizer state in a layout this build does not read (here the legacy distributed optimizer's, kept in
    /// distrib_optim.pt) stops the resume with the flag that starts afresh; with that flag the weights load.
    func testUnreadableMegatronOptimizerStateNamesNoLoadOptim() throws {
        let source = Self.fixtures.appendingPathComponent("resume/adam_torch/iter_0000003/mp_rank_00/model_optim_rng.pt")
        let state = try TorchSave.read(Data(contentsOf: source), source: source.path)
        let pairs = try XCTUnwrap(state.pairs).map { pair in
            pair.key.stringValue == "optimizer"
                ? PickleValue.Pair(pair.key, .stringDict([("param_state_sharding_type", .string("dp_zero_gather_scatter"))])) : pair
        }
        let root = try scratchDirectory("megatron-distrib-optim")
        let file = root.appendingPathComponent("iter_0000003/mp_rank_00/model_optim_rng.pt")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try TorchSave.write(.dict(pairs), prefix: "model_optim_rng").write(to: file)
        try Data("3".utf8).write(to: root.appendingPathComponent("latest_checkpointed_iteration.txt"))
        let flags = "--train-iters 4 --global-batch-size 2 --micro-batch-size 2 --load \(root.path)"
        XCTAssertThrowsError(try train(flags)) { XCTAssertTrue("\($0)".contains("distrib_optim.pt") && "\($0)".contains("--no-load-optim"), "\($0)") }
        let (lines, _) = try train(flags + " --no-load-optim")
        XCTAssertTrue(lines.contains { $0.contains("its optimizer state is not (--no-load-optim)") }, "\(lines)")
    }

    /// pretrain-gpt's torch_dist save holds Adam's state as Megatron-LM resumes from it (the distributed optimizer's
    /// fully reshardable layout; make_megatron_checkpoints.py continue resumes from such a checkpoint in Megatron):
    /// every parameter's main copy and moments, the param groups with the step, the scheduler with the flags' rates.
    func testOurSaveHoldsMegatronsOptimizerLayout() throws {
        let save = try scratchDirectory("megatron-optimizer-layout")
        _ = try train("--train-iters 2 --save-interval 2 --save \(save.path)")
        let contents = try DistributedCheckpoint.read(save.appendingPathComponent("iter_0000002"))
        XCTAssertEqual(contents.common["optimizer"]?["param_state_sharding_type"]?.stringValue, "fully_reshardable")
        XCTAssertEqual(contents.common["content_metadata"]?["distrib_optim_sharding_type"]?.stringValue, "fully_reshardable")
        XCTAssertEqual(contents.common["args"]?.attribute("no_save_optim")?.boolValue, false)
        XCTAssertEqual(contents.common["opt_param_scheduler"]?["max_lr"]?.doubleValue, 0.001, "--lr 1e-3 as Megatron holds it")
        let groups = contents.common["optimizer"]?["optimizer"]?["param_groups"]?.elements ?? []
        XCTAssertEqual(groups.compactMap { $0["step"]?.intValue }, [2, 2])
        XCTAssertEqual(Set(groups.compactMap { $0["wd_mult"]?.doubleValue }), [0, 1])
        for kind in ["param", "exp_avg", "exp_avg_sq"] {
            XCTAssertEqual(contents.tensors["optimizer.state.\(kind).decoder.layers.mlp.linear_fc1.weight"]?.shape, [2, 64, 16], kind)
        }
        XCTAssertEqual(contents.tensors["optimizer.state.param.decoder.layers.mlp.linear_fc1.weight"]?.floats(),
                       contents.tensors["decoder.layers.mlp.linear_fc1.weight"]?.floats(), "an fp32 parameter is its own main copy")
    }
}
