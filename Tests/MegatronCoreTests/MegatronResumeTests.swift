import Foundation
import MegatronCore
import MegatronParallel
import MegatronTensor
import XCTest

/// Megatron-LM trained a tiny GPTModel three steps on CPU and saved it in each optimizer layout it writes
/// (scripts/fixtures/make_megatron_checkpoints.py resume); a fresh Megatron run loaded each and trained two more
/// steps. Training on here from the same checkpoint, with the same batches and hyperparameters, gives Megatron's
/// losses: the first checks the weights, the second the Adam moments, step count and scheduler that the checkpoint
/// carried.
final class MegatronResumeTests: XCTestCase {
    static let root = MegatronCheckpointFormatTests.fixtures.appendingPathComponent("resume")

    struct Record: Decodable {
        struct Layout: Decodable {
            var iteration: Int
            var losses_after: [Double]
        }
        var batches: [[[Int]]]
        var layouts: [String: Layout]
    }

    func testDistributedOptimizerDefaultLayoutResumesWithMegatronsLosses() throws { try assertResumes("dist_dp_reshardable") }

    func testDistributedOptimizerFullyReshardableLayoutResumesWithMegatronsLosses() throws { try assertResumes("dist_fully_reshardable") }

    func testPlainOptimizerTorchDistResumesWithMegatronsLosses() throws { try assertResumes("adam_torch_dist") }

    func testPlainOptimizerLegacyTorchResumesWithMegatronsLosses() throws { try assertResumes("adam_torch") }

    func assertResumes(_ layout: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let record = try JSONDecoder().decode(Record.self, from: Data(contentsOf: Self.root.appendingPathComponent("losses.json")))
        let expected = try XCTUnwrap(record.layouts[layout])
        let resumed = try losses(layout, record, iteration: expected.iteration, withOptimizerState: true)
        for (ours, theirs) in zip(resumed, expected.losses_after) {
            XCTAssertEqual(ours, theirs, accuracy: 2e-6 * theirs, "\(layout): losses \(resumed), Megatron's \(expected.losses_after)",
                           file: file, line: line)
        }
        // The second loss depends on the optimizer state: a fresh optimizer from the same weights misses it by far.
        let fresh = try losses(layout, record, iteration: expected.iteration, withOptimizerState: false)
        XCTAssertGreaterThan(abs(fresh[1] - expected.losses_after[1]), 1e-4, "\(layout): \(fresh)", file: file, line: line)
    }

    /// The losses of the steps after `iteration`, trained from the checkpoint `layout` with Megatron's
    /// hyperparameters (AdamW, betas 0.9 / 0.95, clipping at 1, warm-up then cosine over samples).
    func losses(_ layout: String, _ record: Record, iteration: Int, withOptimizerState: Bool) throws -> [Double] {
        let store = CheckpointDirectory(root: Self.root.appendingPathComponent(layout))
        let checkpoint = try XCTUnwrap(try store.loadLatest())
        XCTAssertNil(checkpoint.optimizerNotCarried)
        XCTAssertEqual(checkpoint.iteration, iteration)
        let manifest = try checkpoint.metadata.manifest()
        let model = try GPTCheckpoint.load(from: store).model
        let groups = try ParamGroup.megatronDefault(model.namedParameters())
        let parallel = ParallelState.singleRank()
        let optimizer = try TrainingOptimizer(model: model, groups: groups, rule: try AdamRule.adamW(beta1: 0.9, beta2: 0.95, eps: 1e-8),
                                              parallel: parallel)
        var scheduler = try OptimizerParamScheduler(.init(maxLR: 1e-3, minLR: 1e-4, lrWarmupSteps: 4, lrDecaySteps: 20, lrDecayStyle: .cosine,
                                                          startWD: 0.1, endWD: 0.1, wdIncrSteps: 20), groups: groups.map(\.override))
        if withOptimizerState {
            var state: [String: Tensor] = [:]
            for (key, t) in checkpoint.tensors where key.hasPrefix("optimizer.") { state[String(key.dropFirst(10))] = t }
            XCTAssertEqual(Set(state.keys), Set(model.namedParameters().flatMap { ["state0." + $0.0, "state1." + $0.0] }))
            try optimizer.loadState(state, stepCount: try XCTUnwrap(manifest.optimizerSteps))
            try scheduler.load(try XCTUnwrap(manifest.optParamScheduler))
        } else {
            scheduler.step(2 * iteration)
        }
        let step = TrainingStep(model: model, optimizer: optimizer, parallel: parallel, clipGrad: 1)
        return try record.batches[iteration...].map { rows in
            let tokens = Tensor(shape: [rows.count, rows[0].count - 1], ints: rows.flatMap { $0.dropLast() })
            let labels = Tensor(shape: [rows.count, rows[0].count - 1], ints: rows.flatMap { $0.dropFirst() })
            return try step.run(microBatches: 1, samples: rows.count, scheduler: &scheduler) { _ in
                TrainingBatch(tokens: tokens, labels: labels)
            }.loss
        }
    }
}
