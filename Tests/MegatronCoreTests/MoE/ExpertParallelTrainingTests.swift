import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// Expert parallelism on thread ranks against the single-rank run of the same global batch: the MoE model of
/// `MoETrainingStepTests` (4 experts, top-2, aux and z losses) trained 3 steps with each layout and dispatcher
/// gives the same losses, aux losses and gradient norms. The reference runs the micro-batches the data-parallel
/// ranks run (the aux losses are per micro-batch), one after another.
final class ExpertParallelTrainingTests: XCTestCase {
    struct Layout: CustomStringConvertible {
        var expert: Int, tensor = 1, expertTensor = 1, world: Int
        var dispatcher: TokenDispatcherType
        var distributedOptimizer = false

        var dataParallel: Int { world / tensor }
        var description: String {
            "EP=\(expert) TP=\(tensor) ETP=\(expertTensor) world=\(world) \(dispatcher)\(distributedOptimizer ? " distributed optimizer" : "")"
        }
    }

    static func setup(_ layout: Layout) -> DPTraining.Setup {
        var setup = DPTraining.Setup(dataParallelSize: layout.dataParallel)
        setup.ddp = DistributedDataParallelConfig(useDistributedOptimizer: layout.distributedOptimizer)
        return setup
    }

    /// The single-rank run in micro-batches of `8 / dp / 2` samples.
    static func reference(dataParallel: Int) throws -> DPTraining.RankResult {
        let trainer = try DPTraining.Trainer(model: try MoETrainingStepTests.model(), setup: DPTraining.Setup(), parallel: .singleRank())
        var result = DPTraining.RankResult()
        for step in 0..<DPTraining.steps {
            try trainer.train(step: step, microBatchSize: DPTraining.globalBatch / dataParallel / DPTraining.microBatches, into: &result)
        }
        return result
    }

    static func run(_ layout: Layout) throws -> [DPTraining.RankResult] {
        try ThreadCommunicator.run(worldSize: layout.world) { world in try train(layout, world: world) }
    }

    /// One rank's 3 steps of `layout` over `world`.
    static func train(_ layout: Layout, world: Communicator) throws -> DPTraining.RankResult {
        let parallel = try ParallelState(layout: ParallelLayout(worldSize: world.size, tensor: layout.tensor, expert: layout.expert,
                                                                expertTensor: layout.expertTensor), world: world)
        var model = try MoETrainingStepTests.model()
        if layout.tensor > 1 {
            model = try model.tensorParallelShard(for: TensorParallelGroup(parallel.tensor, sequenceParallel: true), seed: 7)
        }
        try model.distributeExperts(over: ExpertParallelGroup(parallel.expert, dispatcher: layout.dispatcher,
                                                              expertTensorParallel: layout.expertTensor > 1))
        XCTAssertEqual(model.moeLayers[0].experts.localExperts.count, 4 / layout.expert)
        let trainer = try DPTraining.Trainer(model: model, setup: setup(layout), parallel: parallel)
        var result = DPTraining.RankResult()
        for step in 0..<DPTraining.steps { try trainer.train(step: step, into: &result) }
        return result
    }

    func check(_ layouts: [Layout]) throws {
        var references: [Int: DPTraining.RankResult] = [:]
        for layout in layouts {
            let reference = try references[layout.dataParallel] ?? Self.reference(dataParallel: layout.dataParallel)
            references[layout.dataParallel] = reference
            for (rank, result) in try Self.run(layout).enumerated() {
                let label = "\(layout), rank \(rank)"
                for step in 0..<DPTraining.steps {
                    XCTAssertEqual(result.losses[step], reference.losses[step], accuracy: 1e-5, "\(label) loss, step \(step)")
                    XCTAssertEqual(result.gradNorms[step], reference.gradNorms[step], accuracy: 1e-5, "\(label) grad norm, step \(step)")
                    XCTAssertEqual(Set(result.moeLosses[step].keys), ["load_balancing_loss", "z_loss"], label)
                    for (name, value) in reference.moeLosses[step] {
                        XCTAssertEqual(result.moeLosses[step][name] ?? .nan, value, accuracy: 1e-5, "\(label) \(name), step \(step)")
                    }
                }
            }
        }
    }

    func testExpertParallelTwoAndFourRanks() throws {
        try check([Layout(expert: 2, world: 2, dispatcher: .alltoall), Layout(expert: 2, world: 2, dispatcher: .allgather),
                   Layout(expert: 4, world: 4, dispatcher: .alltoall)])
    }

    func testExpertParallelWithTensorParallel() throws {
        try check([Layout(expert: 2, tensor: 2, expertTensor: 1, world: 4, dispatcher: .alltoall),
                   Layout(expert: 2, tensor: 2, expertTensor: 2, world: 4, dispatcher: .allgather)])
    }

    /// EP=2 x DP=2: expert gradients reduced (and the optimizer sharded) over the expert data-parallel pairs.
    func testExpertParallelWithDistributedOptimizer() throws {
        try check([Layout(expert: 2, world: 4, dispatcher: .alltoall, distributedOptimizer: true),
                   Layout(expert: 2, world: 4, dispatcher: .allgather, distributedOptimizer: true)])
    }
}
