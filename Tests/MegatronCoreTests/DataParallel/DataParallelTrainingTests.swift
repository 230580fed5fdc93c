import XCTest
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// Acceptance: data-parallel training on thread ranks (DP 2 and 4, gradient accumulation over 2
/// micro-batches, AdamW with clipping, several buckets) equals the single-rank run on the whole batch.
final class DataParallelTrainingTests: XCTestCase {
    static func runRanks<T>(_ n: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        try ThreadCommunicator.run(worldSize: n) { try body($0) }
    }

    /// fp32 tolerance on values of order 1 after 3 Adam steps with lr 1e-2 (measured: up to 6e-6).
    static let fp32Tolerance: Float = 2e-5
    /// One bf16 rounding step of a parameter of magnitude up to 1 (2^-7), for bf16 parameters.
    static let bf16Step: Float = 1.0 / 128

    func check(_ setup: DPTraining.Setup, reference: DPTraining.RankResult) throws {
        let ranks = try Self.runRanks(setup.dataParallelSize) { try DPTraining.rank(setup, dp: $0) }
        let config = setup.ddp!
        let label = "dp \(setup.dataParallelSize) \(setup.paramsDType) overlap \(config.overlapGradReduce) distopt \(config.useDistributedOptimizer)"
        for (r, run) in ranks.enumerated() {
            DPTraining.assertMatches(run, reference, tolerance: Self.fp32Tolerance,
                                     parameterTolerance: setup.paramsDType == .float32 ? nil : Self.bf16Step,
                                     label: "\(label) rank \(r)")
            if config.overlapGradReduce {
                XCTAssertGreaterThan(run.buckets, 3, "\(label): the model should span several buckets")
                XCTAssertEqual(run.startedDuringBackward, Array(repeating: run.buckets, count: setup.steps),
                               "\(label): every bucket's reduction starts from the hooks during the last backward")
            } else {
                XCTAssertEqual(run.buckets, 1, "\(label): Megatron keeps one bucket without overlap")
                XCTAssertEqual(run.startedDuringBackward, Array(repeating: 0, count: setup.steps), label)
            }
        }
    }

    /// fp32: against the whole batch in 2 micro-batches. bf16: against the same micro-batches as the ranks
    /// (see `DPTraining.reference`).
    func checkAllLayouts(dtype: DType, distributedOptimizer: Bool) throws {
        for dp in [2, 4] {
            let microBatchSize = dtype == .float32 ? 4 : DPTraining.globalBatch / dp / DPTraining.microBatches
            let reference = try DPTraining.reference(DPTraining.Setup(paramsDType: dtype),
                                                     microBatchSizes: Array(repeating: microBatchSize, count: DPTraining.steps))
            XCTAssertTrue(reference.gradNorms.allSatisfy { $0 > DPTraining.clipGrad }, "clipping should be active")
            for overlap in [false, true] {
                let config = DistributedDataParallelConfig(overlapGradReduce: overlap, useDistributedOptimizer: distributedOptimizer,
                                                           overlapParamGather: overlap && distributedOptimizer)
                try check(DPTraining.Setup(dataParallelSize: dp, paramsDType: dtype, ddp: config), reference: reference)
            }
        }
    }

    func testFP32AllReduceMatchesSingleRank() throws {
        try checkAllLayouts(dtype: .float32, distributedOptimizer: false)
    }

    func testFP32DistributedOptimizerMatchesSingleRank() throws {
        try checkAllLayouts(dtype: .float32, distributedOptimizer: true)
    }

    func testBF16AllReduceMatchesSingleRank() throws {
        try checkAllLayouts(dtype: .bfloat16, distributedOptimizer: false)
    }

    func testBF16DistributedOptimizerMatchesSingleRank() throws {
        try checkAllLayouts(dtype: .bfloat16, distributedOptimizer: true)
    }

    func testAverageInCollectiveMatchesPreScaling() throws {
        let reference = try DPTraining.reference(DPTraining.Setup())
        let config = DistributedDataParallelConfig(overlapGradReduce: true, useDistributedOptimizer: true, averageInCollective: true)
        try check(DPTraining.Setup(dataParallelSize: 2, ddp: config), reference: reference)
    }

    /// The distributed optimizer's tensor-op step (what GPU parameters run) on the CPU; its Adam blends the
    /// moments as `b m + (1 - b) g` instead of torch's lerp, equal up to rounding.
    func testDistributedOptimizerTensorOpPathMatchesSingleRank() throws {
        let reference = try DPTraining.reference(DPTraining.Setup())
        var setup = DPTraining.Setup(dataParallelSize: 2, ddp: DistributedDataParallelConfig(overlapGradReduce: true, useDistributedOptimizer: true))
        setup.tensorOps = true
        try check(setup, reference: reference)
    }

    /// A checkpoint of a DP2 distributed-optimizer run, gathered into the full state, loads into DP4 (and
    /// into a single rank's plain optimizer) and continues exactly as the uninterrupted single-rank run.
    func testDistributedOptimizerStateReshardsAcrossDataParallelSizes() throws {
        for dtype in [DType.float32, .bfloat16] {
            var saveSetup = DPTraining.Setup(dataParallelSize: 2, paramsDType: dtype,
                                             ddp: DistributedDataParallelConfig(overlapGradReduce: true, useDistributedOptimizer: true))
            saveSetup.steps = 2
            let saved = try Self.runRanks(2) { dp -> ([String: Tensor], [String: Tensor]) in
                let trainer = try DPTraining.Trainer(model: try DPTraining.model(dtype), setup: saveSetup, dp: dp)
                var result = DPTraining.RankResult()
                for step in 0..<2 { try trainer.train(step: step, into: &result) }
                try trainer.optimizer.finishParameterUpdates()
                let parameters = trainer.model.stateDict().mapValues { $0.madeContiguous().cast(to: .float32).cast(to: dtype) }
                return (parameters, try trainer.optimizer.stateTensors())
            }[0]
            XCTAssertEqual(saved.1.keys.filter { $0.hasPrefix("state0.") }.count, saved.0.count)
            XCTAssertEqual(saved.1.keys.filter { $0.hasPrefix("master.") }.count, dtype == .float32 ? 0 : saved.0.count)

            for (dp, distributed) in [(4, true), (1, false)] {
                // bf16: the reference sees each phase's micro-batches (2 samples on DP2, 8 / dp / 2 after).
                let sizes = dtype == .float32 ? [4, 4, 4] : [2, 2, DPTraining.globalBatch / dp / DPTraining.microBatches]
                let reference = try DPTraining.reference(DPTraining.Setup(paramsDType: dtype), microBatchSizes: sizes)
                let resumeSetup = DPTraining.Setup(dataParallelSize: dp, paramsDType: dtype,
                                                   ddp: DistributedDataParallelConfig(useDistributedOptimizer: distributed))
                let runs = try Self.runRanks(dp) { group -> DPTraining.RankResult in
                    let trainer = try DPTraining.Trainer(model: try DPTraining.model(dtype), setup: resumeSetup, dp: group)
                    try trainer.load(parameters: saved.0, optimizerState: saved.1, steps: 2)
                    var result = DPTraining.RankResult()
                    try trainer.train(step: 2, into: &result)
                    try trainer.finish(into: &result)
                    return result
                }
                for (r, run) in runs.enumerated() {
                    let label = "\(dtype) DP2 -> \(distributed ? "DP\(dp) distributed" : "single-rank plain") rank \(r)"
                    XCTAssertEqual(run.losses[0], reference.losses[2], accuracy: 1e-5, label)
                    var tail = reference
                    tail.losses = [reference.losses[2]]
                    tail.gradNorms = [reference.gradNorms[2]]
                    DPTraining.assertMatches(run, tail, tolerance: Self.fp32Tolerance,
                                             parameterTolerance: dtype == .float32 ? nil : Self.bf16Step, label: label)
                }
            }
        }
    }
}
