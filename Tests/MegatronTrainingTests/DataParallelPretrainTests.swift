import Foundation
import XCTest
import MegatronCore
import MegatronParallel
@testable import MegatronTraining

/// pretrain-gpt on data-parallel thread ranks against the same run on one rank.
final class DataParallelPretrainTests: XCTestCase {
    private func arguments(_ extra: String = "") throws -> PretrainArguments {
        try MegatronArgumentParser.parse(
            ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 2 "
             + "--global-batch-size 8 --train-iters 3 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 100 "
             + "--hidden-dropout 0 --attention-dropout 0 --device cpu --ddp-bucket-size 3000 " + extra)
                .split(separator: " ").map(String.init))
    }

    /// Logged losses and final parameters of a run on `dp` ranks (rank 0's view).
    private func run(dp: Int, _ extra: String = "") throws -> (losses: [Double], parameters: [String: [Float]], lines: [String]) {
        let args = try arguments(extra)
        let results = try ThreadCommunicator.run(worldSize: dp) { world -> ([Double], [String: [Float]], [String]) in
            var lines: [String] = []
            let trainer = try Pretrainer(arguments: args, parallel: try ParallelState(layout: ParallelLayout(worldSize: world.size), world: world)) { lines.append($0) }
            let summary = try trainer.run()
            let parameters = Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.floats()) })
            return (summary.intervalLosses, parameters, lines)
        }
        return results[0]
    }

    func testDataParallelRanksMatchOneRank() throws {
        let single = try run(dp: 1)
        for (dp, extra) in [(2, ""), (4, "--use-distributed-optimizer"), (2, "--overlap-grad-reduce"),
                            (2, "--use-distributed-optimizer --overlap-grad-reduce --overlap-param-gather"),
                            (4, "--overlap-grad-reduce --ddp-average-in-collective")] {
            let parallel = try run(dp: dp, extra)
            XCTAssertEqual(parallel.losses.count, 3)
            for (a, b) in zip(parallel.losses, single.losses) { XCTAssertEqual(a, b, accuracy: 1e-5, "dp \(dp) \(extra)") }
            for (name, values) in single.parameters {
                let found = parallel.parameters[name]!
                let worst = zip(found, values).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 1e-5, "\(name) after 3 steps, dp \(dp) \(extra)")
            }
            XCTAssertTrue(parallel.lines.contains { $0.contains("global batch size:     8") }, "\(parallel.lines)")
        }
    }

    func testGlobalBatchMustDivideOverDataParallelRanks() throws {
        let args = try arguments("--global-batch-size 6")
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 4) { world in
            _ = try Pretrainer(arguments: args, parallel: try ParallelState(layout: ParallelLayout(worldSize: world.size), world: world)) { _ in }
        }) { XCTAssertTrue("\($0)".contains("--global-batch-size (6) must be a multiple of --micro-batch-size (2) x data-parallel size (4)"), "\($0)") }
    }
}
