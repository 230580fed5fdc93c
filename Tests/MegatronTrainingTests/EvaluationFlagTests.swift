import Foundation
import MegatronData
import XCTest
@testable import MegatronTraining

/// `--eval-iters 0` turns evaluation off and `--skip-train` evaluates without training, as in Megatron.
final class EvaluationFlagTests: XCTestCase {
    func run(_ extra: String) throws -> (Pretrainer.Summary, [String]) {
        let args = try MegatronArgumentParser.parse((ArgumentTests.required + " --train-iters 2 --log-interval 1 --device cpu "
            + "--hidden-dropout 0 --attention-dropout 0 " + extra).split(separator: " ").map(String.init))
        var lines: [String] = []
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        return (summary, lines)
    }

    /// A small Megatron dataset of token ids below 100 (for NullTokenizer), removed after the test.
    func smallDataset() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let prefix = dir.appendingPathComponent("d_text_document").path
        let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: .optimal(vocabSize: 100))
        for d in 0..<40 { try builder.addDocument((0..<30).map { (d * 7 + $0 * 3) % 99 }, lengths: [30]) }
        try builder.finalize(idxPath: prefix + ".idx")
        return prefix
    }

    func testEvalItersZeroMeansNoEvaluation() throws {
        // The embedded corpus, and Megatron's datasets (whose validation and test splits are then empty).
        let dataset = "--data-path \(try smallDataset()) --split 80,10,10 --tokenizer-type NullTokenizer --vocab-size 100"
        for data in ["", dataset] {
            let (summary, lines) = try run("--eval-iters 0 --eval-interval 1 " + data)
            XCTAssertEqual(summary.iterations, 2)
            XCTAssertNil(summary.validationLoss, data)
            XCTAssertNil(summary.testLoss, data)
            XCTAssertFalse(lines.contains { $0.contains("validation loss") }, lines.joined(separator: "\n"))
        }
        let (summary, lines) = try run("--eval-iters 1 --eval-interval 1")
        XCTAssertNotNil(summary.validationLoss)
        XCTAssertEqual(lines.filter { $0.contains("validation loss") }.count, 3, "after steps 1 and 2, and at the end")
    }

    func testSkipTrainOnlyEvaluates() throws {
        let (summary, lines) = try run("--skip-train --eval-iters 1")
        XCTAssertEqual(summary.iterations, 0)
        XCTAssertEqual(summary.intervalLosses, [])
        XCTAssertNotNil(summary.validationLoss)
        XCTAssertFalse(lines.contains { $0.contains("iteration        1/") }, lines.joined(separator: "\n"))
    }
}
