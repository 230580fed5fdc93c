import Foundation
import XCTest
@testable import MegatronTraining

final class TensorBoardTests: XCTestCase {
    /// TensorBoard's own reader (the `tensorboard` package) loads what we write; skips where it is not installed.
    func testTensorBoardReadsOurEventFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 16 --max-position-embeddings 16 --micro-batch-size 2 --train-iters 3 "
             + "--lr 1e-3 --log-interval 1 --eval-interval 3 --eval-iters 1 --tensorboard-dir \(dir.path) "
             + "--log-timers-to-tensorboard --log-throughput --log-memory-to-tensorboard").split(separator: " ").map(String.init))
        let trainer = try Pretrainer(arguments: args) { _ in }
        _ = try trainer.run()

        let script = """
            import json, sys
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
            ea = EventAccumulator(sys.argv[1]); ea.Reload()
            print(json.dumps({tag: [[e.step, e.value] for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, dir.path]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = Pipe()
        do { try process.run() } catch { throw XCTSkip("python3 is not available") }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw XCTSkip("the tensorboard Python package is not installed") }
        let read = try JSONSerialization.jsonObject(with: out.fileHandleForReading.readDataToEndOfFile()) as! [String: [[Double]]]

        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let jsonl = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let losses = jsonl.compactMap { $0["lm loss"] as? Double }
        XCTAssertEqual(read["lm loss"]?.map { $0[0] }, [1, 2, 3])
        for (tb, ours) in zip(read["lm loss"]!.map { $0[1] }, losses) { XCTAssertEqual(tb, ours, accuracy: 1e-6 * ours) }
        XCTAssertEqual(read["lm loss validation"]?.first?[0], 3)
        for tag in ["learning-rate", "grad-norm", "throughput", "iteration-time", "lm loss vs samples"] { XCTAssertNotNil(read[tag], tag) }
        XCTAssertEqual(read["lm loss vs samples"]?.map { $0[0] }, [2, 4, 6], "at the consumed samples")
        // Memory is the GPU caching allocator's; a CPU run has none to report.
        let gpu = MemoryReport.current(on: trainer.device) != nil
        for tag in ["mem-allocated-bytes", "mem-max-allocated-bytes", "mem-reserved-bytes", "mem-allocated-count"] {
            XCTAssertEqual(read[tag]?.count, gpu ? 3 : nil, tag)
        }
    }
}
