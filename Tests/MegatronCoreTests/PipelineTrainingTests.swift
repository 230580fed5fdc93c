import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// Pipeline-parallel training on CPU thread ranks against the single-rank run: a tiny GPT split into stages
/// (and model chunks, interleaved) by `PipelineLayerPlacement`, trained 3 steps through `TrainingStep` with
/// `PipelineStageSchedule`, must log the same losses and gradient norms as the whole model trained on one rank.
final class PipelineTrainingTests: XCTestCase {
    static let globalBatch = 8, sequence = 8, vocab = 64, steps = 3

    struct Layout {
        var tensor = 1, pipeline = 1, data = 1
        var layers = 4
        var untied = false
        var distributedOptimizer = false
        var firstStageLayers: Int?, lastStageLayers: Int?
        /// Model chunks per pipeline rank (interleaved 1F1B); nil: 1F1B.
        var virtualStages: Int?
        var overlapP2P = true
        var overlapWarmupFlush = false
        var overlapGradReduce = false
        var worldSize: Int { tensor * pipeline * data }
    }

    struct RankRun {
        var losses: [Double] = [], gradNorms: [Float] = []
        var pipelineRank = 0, peakLive = 0
    }

    func testStagesHoldTheWholeModelsWeightsUnderItsNames() throws {
        let config = try TransformerConfig(numLayers: 4, hiddenSize: 16, numAttentionHeads: 2)
        let placements = [try PipelineLayerPlacement(layers: 4, stages: 2, firstStageLayers: 1, lastStageLayers: 3),
                          try PipelineLayerPlacement(layers: 4, stages: 2, virtualStages: 2)]
        for placement in placements {
        for untied in [false, true] {
            let whole = GPTModel(config: config, vocabSize: Self.vocab, maxSequenceLength: Self.sequence,
                                 untieEmbeddingsAndOutputWeights: untied, seed: 5)
            let expected = Dictionary(uniqueKeysWithValues: whole.namedParameters().map { ($0.0, $0.1.floats()) })
            var names: [[String]] = []
            for rank in 0..<2 {
                let stage = try GPTModel(config: config, vocabSize: Self.vocab, maxSequenceLength: Self.sequence,
                                         untieEmbeddingsAndOutputWeights: untied, seed: 5, tensorParallel: .single,
                                         stage: GPTModelStage(placement: placement, rank: rank))
                for (name, parameter) in stage.namedParameters() {
                    XCTAssertEqual(parameter.floats(), expected[name], "\(name) on stage \(rank)")
                }
                names.append(stage.namedParameters().map(\.0))
            }
            XCTAssertEqual(Set(names.joined()), Set(expected.keys))
            XCTAssertTrue(names[0].contains("decoder.layers.0.mlp.linear_fc1.weight"))
            XCTAssertTrue(names[1].contains("decoder.layers.3.mlp.linear_fc1.weight"))
            XCTAssertFalse(names[1].contains("decoder.layers.0.mlp.linear_fc1.weight"))
            // Tied: the last stage keeps a copy of the word embeddings for its output layer.
            XCTAssertEqual(names[1].contains("embedding.word_embeddings.weight"), !untied)
        }
        }
        // Interleaved, Megatron's placement: rank 0 holds layers 0 and 2, rank 1 layers 1 and 3.
        let interleaved = GPTModelStage(placement: placements[1], rank: 0)
        XCTAssertEqual(interleaved.chunks, [0..<1, 2..<3])
        XCTAssertEqual(GPTModelStage(placement: placements[1], rank: 1).chunks, [1..<2, 3..<4])
    }

    func testTwoStagesTiedMatchesSingleRank() throws { try assertMatchesSingleRank(Layout(pipeline: 2)) }

    func testTwoStagesUntiedMatchesSingleRank() throws { try assertMatchesSingleRank(Layout(pipeline: 2, untied: true)) }

    func testFourStagesMatchSingleRankAndBoundActivations() throws {
        let runs = try assertMatchesSingleRank(Layout(pipeline: 4))
        // 1F1B keeps at most (stages - rank) micro-batches alive: 4 on stage 0, 1 on the last.
        XCTAssertEqual(runs.first { $0.pipelineRank == 0 }?.peakLive, 4)
        XCTAssertEqual(runs.first { $0.pipelineRank == 3 }?.peakLive, 1)
    }

    func testUnevenFirstAndLastStagesMatchSingleRank() throws {
        try assertMatchesSingleRank(Layout(pipeline: 3, layers: 5, firstStageLayers: 1, lastStageLayers: 2))
    }

    func testPipelineWithTensorParallelMatchesSingleRank() throws {
        try assertMatchesSingleRank(Layout(tensor: 2, pipeline: 2))
    }

    func testInterleavedTwoStagesMatchSingleRank() throws {
        try assertMatchesSingleRank(Layout(pipeline: 2, virtualStages: 2))
        try assertMatchesSingleRank(Layout(pipeline: 2, untied: true, virtualStages: 2))
    }

    func testInterleavedUnevenFirstStageMatchesSingleRank() throws {
        // Megatron's uneven virtual placement: rank 0 holds layers 0 | 3, rank 1 layers 1-2 | 4-5.
        try assertMatchesSingleRank(Layout(pipeline: 2, layers: 6, firstStageLayers: 2, virtualStages: 2))
    }

    func testInterleavedBatchedTransfersMatchSingleRankAndBoundActivations() throws {
        // Without p2p overlap, as Megatron requires, more than two stages: both directions in one batch.
        let runs = try assertMatchesSingleRank(Layout(pipeline: 4, layers: 8, virtualStages: 2, overlapP2P: false))
        // Interleaving keeps Megatron's warm-up plus one of the 8 x 2 passes alive on stage 0: 2 x 3 + 4 + 1.
        XCTAssertEqual(runs.first { $0.pipelineRank == 0 }?.peakLive, 11)
        XCTAssertEqual(runs.first { $0.pipelineRank == 3 }?.peakLive, 5)
    }

    /// `--overlap-p2p-communication-warmup-flush` only moves where receives are posted: the same losses and
    /// gradient norms as the run without it, bit for bit (and as the single rank).
    func testInterleavedWarmupFlushMatchesTheOverlappedRunExactly() throws {
        for layout in [Layout(pipeline: 2, virtualStages: 2), Layout(pipeline: 4, layers: 8, virtualStages: 2)] {
            var flushed = layout
            flushed.overlapWarmupFlush = true
            let with = try assertMatchesSingleRank(flushed)
            let without = try ThreadCommunicator.run(worldSize: layout.worldSize, timeout: 60) { try Self.train(layout, pipelined: true, world: $0) }
            XCTAssertEqual(with.map(\.losses), without.map(\.losses))
            XCTAssertEqual(with.map(\.gradNorms), without.map(\.gradNorms))
        }
    }

    func testInterleavedWithDataParallelOverlappedGradReduceMatchesSingleRank() throws {
        try assertMatchesSingleRank(Layout(pipeline: 2, data: 2, virtualStages: 2, overlapGradReduce: true))
    }

    /// The tied embeddings' gradient is summed over the first and last stages after the data-parallel
    /// reduction, which `--overlap-grad-reduce` starts during the backward.
    func testTiedEmbeddingsWithOverlappedGradReduceMatchSingleRank() throws {
        try assertMatchesSingleRank(Layout(pipeline: 2, data: 2, overlapGradReduce: true))
        try assertMatchesSingleRank(Layout(pipeline: 2, data: 2, distributedOptimizer: true, overlapGradReduce: true))
    }

    func testPipelineWithDistributedOptimizerMatchesSingleRank() throws {
        try assertMatchesSingleRank(Layout(pipeline: 2, data: 2, distributedOptimizer: true))
        try assertMatchesSingleRank(Layout(pipeline: 2, data: 2, untied: true, distributedOptimizer: true))
    }

    @discardableResult
    func assertMatchesSingleRank(_ layout: Layout, file: StaticString = #filePath, line: UInt = #line) throws -> [RankRun] {
        let reference = try ThreadCommunicator.run(worldSize: 1) { try Self.train(layout, pipelined: false, world: $0) }[0]
        let runs = try ThreadCommunicator.run(worldSize: layout.worldSize, timeout: 60) { try Self.train(layout, pipelined: true, world: $0) }
        for run in runs {
            XCTAssertEqual(run.losses.count, Self.steps, file: file, line: line)
            for (a, b) in zip(run.losses, reference.losses) {
                XCTAssertEqual(a, b, accuracy: 1e-5 * abs(b), "loss on pipeline rank \(run.pipelineRank)", file: file, line: line)
            }
            for (a, b) in zip(run.gradNorms, reference.gradNorms) {
                XCTAssertEqual(a, b, accuracy: 1e-5 * abs(b), "grad norm on pipeline rank \(run.pipelineRank)", file: file, line: line)
            }
        }
        return runs
    }

    /// One rank's 3 steps; `pipelined: false` trains the whole model on one rank (the reference).
    static func train(_ layout: Layout, pipelined: Bool, world: Communicator) throws -> RankRun {
        let shape = pipelined ? layout : Layout(layers: layout.layers, untied: layout.untied)
        let parallel = try ParallelState(layout: ParallelLayout(worldSize: world.size, tensor: shape.tensor, pipeline: shape.pipeline),
                                         world: world)
        let placement = try PipelineLayerPlacement(layers: layout.layers, stages: shape.pipeline, virtualStages: shape.virtualStages,
                                                   firstStageLayers: shape.firstStageLayers, lastStageLayers: shape.lastStageLayers)
        let config = try TransformerConfig(numLayers: layout.layers, hiddenSize: 16, numAttentionHeads: 2, hiddenDropout: 0,
                                           attentionDropout: 0)
        let model = try GPTModel(config: config, vocabSize: vocab, maxSequenceLength: sequence,
                                 untieEmbeddingsAndOutputWeights: layout.untied, seed: 5,
                                 tensorParallel: TensorParallelGroup(parallel),
                                 stage: GPTModelStage(placement: placement, rank: parallel.pipelineRank))
        let groups = try ParamGroup.megatronDefault(model.namedParameters())
        let optimizer = try TrainingOptimizer(model: model, groups: groups, rule: try AdamRule.adamW(beta1: 0.9, beta2: 0.95, eps: 1e-8),
                                              parallel: parallel,
                                              ddpConfig: DistributedDataParallelConfig(overlapGradReduce: shape.overlapGradReduce,
                                                                                       useDistributedOptimizer: shape.distributedOptimizer))
        let step = TrainingStep(model: model, optimizer: optimizer, parallel: parallel, clipGrad: 1)
        let dp = parallel.dataWithContext.size, microBatchSize = 1, microBatches = globalBatch / dp / microBatchSize
        let schedule = try PipelineStageSchedule(pipeline: parallel.pipeline,
                                                 activationShape: model.stageActivationShape(batch: microBatchSize, seq: sequence),
                                                 dtype: config.paramsDType, device: .cpu, chunks: model.stage.chunks.count,
                                                 overlapCommunication: shape.overlapP2P, overlapWarmupFlush: shape.overlapWarmupFlush)
        if shape.pipeline > 1 { step.schedule = schedule }
        let schedulerConfig = OptimizerParamScheduler.Configuration(maxLR: 1e-2, lrDecaySteps: 100, lrDecayStyle: .constant,
                                                                    startWD: 0.1, endWD: 0.1, wdIncrSteps: 100)
        var scheduler = try OptimizerParamScheduler(schedulerConfig, groups: groups.map(\.override))
        var run = RankRun(pipelineRank: parallel.pipelineRank)
        for s in 0..<steps {
            let result = try step.run(microBatches: microBatches, samples: globalBatch, scheduler: &scheduler) { m in
                let first = parallel.dataRank * (globalBatch / dp) + m * microBatchSize
                let rows = (first..<(first + microBatchSize)).map { sample(step: s, index: $0) }
                return TrainingBatch(tokens: Tensor(shape: [microBatchSize, sequence], ints: rows.flatMap(\.tokens)),
                                     labels: Tensor(shape: [microBatchSize, sequence], ints: rows.flatMap(\.labels)))
            }
            run.losses.append(result.loss)
            run.gradNorms.append(result.gradNorm)
        }
        run.peakLive = schedule.peakLiveMicroBatches
        return run
    }

    /// Sample `i` of step `step`: tokens and next-token labels from a fixed LCG stream.
    static func sample(step: Int, index i: Int) -> (tokens: [Int], labels: [Int]) {
        var state = UInt64(7 + step * 1000 + i * 31)
        let stream = (0...sequence).map { _ -> Int in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(vocab))
        }
        return (Array(stream[0..<sequence]), Array(stream[1...sequence]))
    }
}
