import Foundation
import XCTest
import MegatronCore
@testable import MegatronTraining

/// `kill -9` at any moment of a run that saves every iteration leaves the latest complete checkpoint loadable.
final class CrashSafetyTests: XCTestCase {
    func testKillDuringSavesLeavesALoadableCheckpoint() throws {
        let binary = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("megatron")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw XCTSkip("the megatron executable is not built next to the tests")
        }
        for delay in [0.0, 0.05, 0.13] {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("crash-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let process = Process()
            process.executableURL = binary
            process.arguments = ("pretrain-gpt --num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
                + "--micro-batch-size 2 --train-iters 1000 --lr 1e-3 --log-interval 1000 --save \(root.path) --save-interval 1")
                .split(separator: " ").map(String.init)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let store = CheckpointDirectory(root: root)
            let deadline = Date().addingTimeInterval(60)
            while ((try? store.latestIteration()) ?? nil ?? 0) < 3 && Date() < deadline { usleep(2000) }
            usleep(useconds_t(delay * 1_000_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let latest = try XCTUnwrap(try store.loadLatest(), "a checkpoint survives")
            XCTAssertGreaterThanOrEqual(latest.iteration, 3)
            let args = try MegatronArgumentParser.parse(
                ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 "
                 + "--train-iters 1000 --exit-interval \(latest.iteration + 1) --lr 1e-3 --log-interval 1 --eval-iters 1 --load \(root.path)")
                    .split(separator: " ").map(String.init))
            let summary = try Pretrainer(arguments: args) { _ in }.run()
            XCTAssertEqual(summary.iterations, latest.iteration + 1, "resumed after iteration \(latest.iteration)")
        }
    }
}
