import Foundation
import XCTest
import MegatronCore
import MegatronParallel
@testable import MegatronTraining

/// pretrain-gpt on tensor- and data-parallel thread ranks against one rank, and checkpoints that move
/// between layouts (TP2 x DP2 -> TP1 x DP4 -> TP4).
final class TensorParallelPretrainTests: XCTestCase {
    /// A vocabulary of 512 (NullTokenizer 511 + EOD) needs no padding at TP 1, 2 or 4, so every layout
    /// computes the same function.
    private let base = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
        + "--global-batch-size 8 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 "
        + "--attention-dropout 0 --device cpu --mock-data --tokenizer-type NullTokenizer --vocab-size 511 --seed 7"

    private func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse((base + " " + extra).split(separator: " ").map(String.init))
    }

    /// The losses rank 0 logged, on `world` thread ranks.
    private func run(world: Int, _ extra: String) throws -> [Double] {
        let args = try arguments(extra)
        return try ThreadCommunicator.run(worldSize: world) { comm -> [Double] in
            let training = try TrainingWorld.make(args, world: comm)
            return try Pretrainer(arguments: args, parallel: training.parallel) { _ in }.run().intervalLosses
        }[0]
    }

    func testTensorAndDataParallelRanksMatchOneRank() throws {
        let single = try run(world: 1, "--train-iters 3")
        for (world, extra) in [(2, "--tensor-model-parallel-size 2"),
                               (4, "--tensor-model-parallel-size 2 --sequence-parallel --use-distributed-optimizer")] {
            let losses = try run(world: world, "--train-iters 3 " + extra)
            XCTAssertEqual(losses.count, 3)
            for (a, b) in zip(losses, single) { XCTAssertEqual(a, b, accuracy: 2e-5, "world \(world) \(extra): \(losses) vs \(single)") }
        }
    }

    /// `--fp16` (loss scaling, the norm's inf/NaN check across the tensor-parallel ranks) trains at TP 2 as on
    /// one rank; fp16 activations round differently per shard, hence the looser tolerance.
    func testFP16OnTensorParallelRanksMatchesOneRank() throws {
        let extra = "--train-iters 2 --fp16 --initial-loss-scale 4096"
        let single = try run(world: 1, extra)
        let losses = try run(world: 2, extra + " --tensor-model-parallel-size 2")
        XCTAssertEqual(losses.count, 2)
        XCTAssertGreaterThan(single[0], single[1], "the first step updated the weights: \(single)")
        for (a, b) in zip(losses, single) { XCTAssertEqual(a, b, accuracy: 2e-3 * b, "\(losses) vs \(single)") }
    }

    /// Saved at TP2 x DP2, resumed at TP1 x DP4, saved, resumed at TP4: the losses continue the straight run.
    func testCheckpointsMoveBetweenLayouts() throws {
        let straight = try run(world: 1, "--train-iters 4")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tp-reshard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let (a, b) = (root.appendingPathComponent("a").path, root.appendingPathComponent("b").path)
        let first = try run(world: 4, "--train-iters 4 --exit-interval 2 --save \(a) --save-interval 1 "
                            + "--tensor-model-parallel-size 2 --sequence-parallel --use-distributed-optimizer")
        let second = try run(world: 4, "--train-iters 4 --exit-interval 3 --load \(a) --save \(b) --save-interval 1")
        let third = try run(world: 4, "--train-iters 4 --load \(b) --tensor-model-parallel-size 4")
        let resumed = first + second + third
        XCTAssertEqual(resumed.count, 4, "\(first) \(second) \(third)")
        for (i, (x, y)) in zip(resumed, straight).enumerated() { XCTAssertEqual(x, y, accuracy: 2e-5, "iteration \(i + 1)") }
    }

    /// With dropout on split activations (sequence parallelism), stopping and resuming at TP 2 repeats the
    /// straight run's losses exactly: the tensor-parallel dropout generator's offset is saved too.
    func testResumeWithTensorParallelDropoutIsExact() throws {
        let flags = "--train-iters 4 --hidden-dropout 0.2 --tensor-model-parallel-size 2 --sequence-parallel"
        let straight = try run(world: 2, flags)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tp-dropout-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let first = try run(world: 2, flags + " --exit-interval 2 --save \(root) --save-interval 2")
        let second = try run(world: 2, flags + " --load \(root)")
        XCTAssertEqual(first + second, straight)
    }
}
