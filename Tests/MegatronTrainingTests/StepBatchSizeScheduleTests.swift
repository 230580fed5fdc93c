import Foundation
import XCTest
@testable import MegatronTraining

/// `--step-batch-size-schedule` against Megatron's own StepBatchsizeNumMicroBatchesCalculator
/// (Fixtures/step_batch_size_schedule.json, written by scripts/fixtures/make_step_batch_size_golden.py), and
/// in the training loop: batch sizes, consumed samples, iterations and the learning-rate schedule.
final class StepBatchSizeScheduleTests: XCTestCase {
    struct Golden: Decodable {
        struct Case: Decodable {
            let schedule: String
            let seq_length: Int?
            let steps: [[Int]]
            let batch_sizes: [[Int]]
            let train_iters: [[Int]]
        }
        struct Refusal: Decodable {
            let schedule: String
            let seq_length: Int?
            let message: String
        }
        let cases: [Case]
        let errors: [Refusal]
    }

    static func golden() throws -> Golden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/step_batch_size_schedule.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    let model = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 1 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 "
        + "--attention-dropout 0 --device cpu "

    func parse(_ words: [String]) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(model.split(separator: " ").map(String.init) + words)
    }

    func testScheduleMatchesMegatronsCalculator() throws {
        let golden = try Self.golden()
        XCTAssertEqual(golden.cases.count, 8)
        for c in golden.cases {
            let schedule = try StepBatchSizeSchedule(c.schedule, seqLength: c.seq_length)
            XCTAssertEqual(schedule.steps.map { [$0.samples, $0.batchSize] }, c.steps, c.schedule)
            for pair in c.batch_sizes {
                XCTAssertEqual(schedule.batchSize(consumedSamples: pair[0]), pair[1], "\(c.schedule) after \(pair[0]) samples")
            }
            for pair in c.train_iters {
                XCTAssertEqual(schedule.iterations(trainSamples: pair[0]), pair[1], "\(c.schedule) for \(pair[0]) samples")
            }
        }
    }

    func testSchedulesMegatronRefusesAreRefusedWithItsReason() throws {
        for refusal in try Self.golden().errors {
            XCTAssertThrowsError(try StepBatchSizeSchedule(refusal.schedule, seqLength: refusal.seq_length)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("--step-batch-size-schedule '\(refusal.schedule)': "), text)
                // Python's own float() error has its own wording here.
                let expected = refusal.message.hasPrefix("could not convert") ? "could not read entry" : refusal.message
                XCTAssertTrue(text.contains(expected), "\(text) should say \(expected)")
            }
        }
    }

    func testGlobalBatchSizeAndRampupAreRefusedBesideASchedule() throws {
        let schedule = ["--step-batch-size-schedule", "0:2 64:4", "--train-samples", "10"]
        XCTAssertThrowsError(try parse(schedule + ["--global-batch-size", "4"]).validate()) {
            XCTAssertTrue("\($0)".contains("Cannot specify both --step-batch-size-schedule and --global-batch-size"), "\($0)")
        }
        XCTAssertThrowsError(try parse(schedule + ["--rampup-batch-size", "2", "2", "8"]).validate()) {
            XCTAssertTrue("\($0)".contains("--rampup-batch-size and --step-batch-size-schedule cannot both be set"), "\($0)")
        }
        XCTAssertNoThrow(try parse(schedule).validate())
    }

    /// "0:1 64:2 160:4" in tokens of 32: 1 sample, then 2 from the 2nd sample, 4 from the 5th. Over 14 samples:
    /// batches 1, 1, 2, 2, 4, 4 (Megatron's update_train_iters: 6 iterations), each logged with its size and
    /// the samples consumed, the learning rate decaying over the samples actually consumed.
    func testTrainingFollowsTheScheduleInSamples() throws {
        let args = try parse(["--step-batch-size-schedule", "0:1 64:2 160:4", "--train-samples", "14",
                              "--lr-decay-style", "linear", "--min-lr", "0"])
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: args) { lines.append($0) }
        XCTAssertEqual(trainer.schedule.trainIters, 6)
        XCTAssertEqual(trainer.schedule.globalBatchSize, 1, "Megatron sets the global batch to micro-batch x data-parallel size")
        _ = try trainer.run()
        let logged = lines.filter { $0.contains("consumed samples:") }
        XCTAssertEqual(logged.count, 6, lines.joined(separator: "\n"))
        for (line, (batch, consumed)) in zip(logged, [(1, 1), (1, 2), (2, 4), (2, 6), (4, 10), (4, 14)]) {
            XCTAssertTrue(line.contains(String(format: "global batch size: %5d |", batch)), line)
            XCTAssertTrue(line.contains(String(format: "consumed samples: %12d |", consumed)), line)
            // The logged lr is the one the iteration used: linear over the 14 samples from its start.
            let lr = 3e-3 * (1 - Double(consumed - batch) / 14)
            XCTAssertTrue(line.contains(String(format: "learning rate: %.6E |", Double(Float(lr)))), "\(line) should show \(lr)")
        }
    }

    /// With `--train-iters`, Megatron's iteration-based schedule counts `--lr-decay-iters` in global batches
    /// of micro-batch x data-parallel size, while each step advances it by the scheduled batch.
    func testIterationBasedLearningRateCountsMegatronsGlobalBatch() throws {
        let args = try parse(["--step-batch-size-schedule", "0:2", "--train-iters", "3", "--lr-decay-iters", "8",
                              "--lr-decay-style", "linear", "--min-lr", "0"])
        var lines: [String] = []
        _ = try Pretrainer(arguments: args) { lines.append($0) }.run()
        let logged = lines.filter { $0.contains("consumed samples:") }
        XCTAssertEqual(logged.count, 3)
        for (i, line) in logged.enumerated() {
            let lr = 3e-3 * (1 - Double(2 * i) / 8)    // 8 iterations x 1 sample of decay, 2 samples a step
            XCTAssertTrue(line.contains(String(format: "learning rate: %.6E |", Double(Float(lr)))), "\(line) should show \(lr)")
        }
    }

    func testAScheduledBatchThatDoesNotSplitIntoMicroBatchesStopsTheRun() throws {
        let args = try parse(["--step-batch-size-schedule", "0:2 64:3", "--train-samples", "8", "--micro-batch-size", "2"])
        XCTAssertThrowsError(try Pretrainer(arguments: args) { _ in }.run()) {
            XCTAssertTrue("\($0)".contains("--step-batch-size-schedule: the global batch size 3 (at 2 consumed samples) is not a multiple"), "\($0)")
        }
        let shrinking = try parse(["--step-batch-size-schedule", "0:4 64:2", "--train-samples", "8"])
        XCTAssertThrowsError(try Pretrainer(arguments: shrinking) { _ in }.run()) {
            XCTAssertTrue("\($0)".contains("may not decrease, from 4 to 2"), "\($0)")
        }
    }
}
