import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// A tiny GPT trained for a few steps on a fixed global batch, on one rank or split over data-parallel
/// thread ranks, so the runs can be compared.
///
/// The global batch of 8 sequences is cut into `dp` contiguous slices; each rank runs its slice as 2
/// micro-batches (gradient accumulation) through `TrainingStep`, each micro-batch's loss averaged over its
/// tokens and divided by the number of micro-batches, as Megatron's training loop does. Dropout is off so the runs see
/// the same function.
enum DPTraining {
    static let globalBatch = 8, sequence = 8, vocab = 64, microBatches = 2, steps = 3
    static let clipGrad: Float = 0.05
    static let learningRate = 1e-2

    struct Setup {
        var dataParallelSize = 1
        var paramsDType: DType = .float32
        var ddp: DistributedDataParallelConfig? = nil
        /// Elements per bucket; small so the model spreads over several buckets.
        var bucketSize = 4000
        var steps = DPTraining.steps
        /// Run the distributed optimizer's tensor-op step (the GPU path) on the CPU.
        var tensorOps = false
    }

    /// What one rank saw: the DP-averaged loss and the reported grad norm of every step, its final
    /// parameters, and the reduced gradients of the last step (only this rank's shard with the
    /// distributed optimizer) as (parameter name, flat element range, values).
    struct RankResult {
        var losses: [Double] = []
        var gradNorms: [Float] = []
        /// The MoE log items of every step (empty without MoE layers).
        var moeLosses: [[String: Double]] = []
        /// Buckets, and how many of them had started their collective when the last backward returned.
        var buckets = 0, startedDuringBackward: [Int] = []
        var parameters: [String: [Float]] = [:]
        /// fp32 masters of non-fp32 parameters (`master.<name>`), gathered in full.
        var masters: [String: [Float]] = [:]
        var lastGrads: [(name: String, range: Range<Int>, values: [Float])] = []
    }

    static func model(_ dtype: DType) throws -> GPTModel {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, hiddenDropout: 0,
                                           attentionDropout: 0, paramsDType: dtype)
        return GPTModel(config: config, vocabSize: vocab, maxSequenceLength: sequence, seed: 11)
    }

    /// Sample `i` of step `step`'s global batch: tokens and next-token labels from a fixed LCG stream.
    static func sample(step: Int, index i: Int) -> (tokens: [Int], labels: [Int]) {
        var state = UInt64(1 + step * 1000 + i * 17)
        let stream = (0...sequence).map { _ -> Int in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(vocab))
        }
        return (Array(stream[0..<sequence]), Array(stream[1...sequence]))
    }

    static func batch(step: Int, samples: Range<Int>) -> (tokens: Tensor, labels: Tensor) {
        let rows = samples.map { sample(step: step, index: $0) }
        return (Tensor(shape: [rows.count, sequence], ints: rows.flatMap(\.tokens)),
                Tensor(shape: [rows.count, sequence], ints: rows.flatMap(\.labels)))
    }

    /// The samples of micro-batch `m` on data-parallel rank `rank`.
    static func microBatch(rank: Int, dataParallelSize dp: Int, m: Int) -> Range<Int> {
        let perRank = globalBatch / dp, perMicro = perRank / microBatches
        let start = rank * perRank + m * perMicro
        return start..<(start + perMicro)
    }

    static func scheduler(_ groups: [ParamGroup]) throws -> OptimizerParamScheduler {
        let config = OptimizerParamScheduler.Configuration(maxLR: learningRate, lrDecaySteps: 100, lrDecayStyle: .constant,
                                                           startWD: 0.1, endWD: 0.1, wdIncrSteps: 100)
        return try OptimizerParamScheduler(config, groups: groups.map(\.override))
    }

    static func adamW() throws -> AdamRule { try AdamRule.adamW(beta1: 0.9, beta2: 0.95, eps: 1e-8) }

    /// Forward and backward of one of `count` micro-batches; returns the sum of its token losses.
    static func microStep(_ model: GPTModel, step: Int, samples: Range<Int>, of count: Int = microBatches) -> Double {
        let (tokens, labels) = batch(step: step, samples: samples)
        let losses = model.loss(tokens: tokens, labels: labels)
        let total = losses.sum()
        (total * (1 / Float(losses.count * count))).backward()
        return Double(withoutGrad { total.item() })
    }

    /// The single-rank reference: the whole global batch, plain `MixedPrecisionOptimizer`, step s in
    /// micro-batches of `microBatchSizes[s]` samples (default: 2 micro-batches).
    ///
    /// bf16 runs round each micro-batch's activations and gradients to bf16, so a reference that is to
    /// agree with a data-parallel run to fp32 tolerance must see the same micro-batches: `8 / dp / 2`
    /// samples each. Only the fp32 accumulation order of the main grads then differs.
    static func reference(_ setup: Setup, microBatchSizes: [Int]? = nil) throws -> RankResult {
        let trainer = try Trainer(model: try model(setup.paramsDType), setup: setup, parallel: .singleRank())
        var result = RankResult()
        for step in 0..<setup.steps {
            try trainer.train(step: step, microBatchSize: microBatchSizes?[step], into: &result)
        }
        try trainer.finish(into: &result)
        return result
    }

    static func masters(_ state: [String: Tensor]) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: state.filter { $0.key.hasPrefix("master.") }.map { ($0.key, $0.value.floats()) })
    }

    /// One data-parallel rank of `setup`, over group `dp`.
    static func rank(_ setup: Setup, dp: Communicator) throws -> RankResult {
        let trainer = try Trainer(model: try model(setup.paramsDType), setup: setup, dp: dp)
        var result = RankResult()
        for step in 0..<setup.steps { try trainer.train(step: step, into: &result) }
        try trainer.finish(into: &result)
        return result
    }

    /// A model trained through `TrainingStep` over the parallel state of a data-parallel group: the plain
    /// optimizer on one rank, DDP with either optimizer on several.
    final class Trainer {
        let model: GPTModel
        let parallel: ParallelState
        let optimizer: TrainingOptimizer
        let step: TrainingStep
        var scheduler: OptimizerParamScheduler

        convenience init(model: GPTModel, setup: Setup, dp: Communicator) throws {
            try self.init(model: model, setup: setup,
                          parallel: try ParallelState(layout: ParallelLayout(worldSize: dp.size), world: dp))
        }

        init(model: GPTModel, setup: Setup, parallel: ParallelState) throws {
            self.model = model
            self.parallel = parallel
            var config = setup.ddp ?? DistributedDataParallelConfig()
            config.bucketSize = setup.bucketSize
            let groups = try ParamGroup.megatronDefault(model.namedParameters())
            optimizer = try TrainingOptimizer(model: model, groups: groups, rule: try adamW(), parallel: parallel, ddpConfig: config)
            if setup.tensorOps { optimizer.distributed?.updateBackend = .tensorOps }
            step = TrainingStep(model: model, optimizer: optimizer, parallel: parallel, clipGrad: clipGrad)
            scheduler = try DPTraining.scheduler(groups)
        }

        /// Step `s` in micro-batches of `microBatchSize` samples (default: this rank's share in 2 micro-batches).
        func train(step s: Int, microBatchSize: Int? = nil, into result: inout RankResult) throws {
            let (dp, rank) = (parallel.data.size, parallel.dataRank)
            let size = microBatchSize ?? globalBatch / dp / microBatches
            var started = 0, grads: [(name: String, range: Range<Int>, values: [Float])] = []
            step.observer = { [self] point in
                switch point {
                case .backwardDone: started = optimizer.ddp?.startedReductions ?? 0
                case .gradientsFinalized: grads = reducedGrads()
                }
            }
            let report = try step.run(microBatches: globalBatch / dp / size, samples: globalBatch, scheduler: &scheduler) { m in
                let first = rank * (globalBatch / dp) + m * size
                let (tokens, labels) = batch(step: s, samples: first..<(first + size))
                return TrainingBatch(tokens: tokens, labels: labels)
            }
            result.losses.append(report.loss)
            result.gradNorms.append(report.gradNorm)
            result.moeLosses.append(report.moeLosses)
            result.buckets = optimizer.ddp?.bucketCount ?? 0
            result.startedDuringBackward.append(started)
            result.lastGrads = grads
        }

        /// Waits for pending parameter all-gathers and records the final parameters and masters.
        func finish(into result: inout RankResult) throws {
            try optimizer.finishParameterUpdates()   // with overlapParamGather the last step's all-gather is still pending
            result.parameters = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.0, $0.1.floats()) })
            result.masters = masters(try optimizer.stateTensors())
        }

        /// Continues from a checkpoint taken after `steps` steps: model parameters, then the optimizer state.
        func load(parameters: [String: Tensor], optimizerState: [String: Tensor], steps: Int) throws {
            try model.loadStateDict(parameters)
            try optimizer.loadState(optimizerState, stepCount: steps)
            for _ in 0..<steps { scheduler.step(globalBatch) }
        }

        /// The reduced gradients this rank holds: every parameter's, or its shard pieces with the distributed optimizer.
        func reducedGrads() -> [(name: String, range: Range<Int>, values: [Float])] {
            guard optimizer.distributed != nil, let ddp = optimizer.ddp else {
                return model.namedParameters().map { ($0.0, 0..<$0.1.count, $0.1.grad!.floats()) }
            }
            var out: [(name: String, range: Range<Int>, values: [Float])] = []
            for (b, buffer) in ddp.buffers.enumerated() {
                let (dp, rank) = (ddp.bufferGroups[b].size, ddp.bufferGroups[b].rank)
                for k in buffer.layout.buckets.indices {
                    let shard = ddp.shardGrad(buffer: b, bucket: k).floats()
                    for piece in buffer.layout.shardPieces(bucket: k, rank: rank, dataParallelSize: dp) {
                        out.append((buffer.parameters[piece.parameterIndex].name, piece.parameterRange,
                                    Array(shard[piece.shardRange])))
                    }
                }
            }
            return out
        }
    }

    /// Asserts that a data-parallel rank's run matches the reference.
    /// `parameterTolerance` (default: `tolerance`) allows for bf16 parameters landing one rounding step apart
    /// when their fp32 masters differ in the last bits; the masters are held to `tolerance`.
    static func assertMatches(_ run: RankResult, _ reference: RankResult, tolerance: Float, parameterTolerance: Float? = nil,
                              label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.losses.count, reference.losses.count, label, file: file, line: line)
        for (a, b) in zip(run.losses, reference.losses) {
            XCTAssertEqual(a, b, accuracy: Double(tolerance) * max(1, abs(b)), "\(label): loss", file: file, line: line)
        }
        for (a, b) in zip(run.gradNorms, reference.gradNorms) {
            XCTAssertEqual(a, b, accuracy: tolerance * max(1, abs(b)), "\(label): grad norm", file: file, line: line)
        }
        let referenceGrads = Dictionary(uniqueKeysWithValues: reference.lastGrads.map { ($0.name, $0.values) })
        var gradError: Float = 0, paramError: Float = 0
        for (name, range, values) in run.lastGrads {
            let expected = referenceGrads[name]![range]
            gradError = max(gradError, zip(values, expected).map { abs($0 - $1) }.max() ?? 0)
        }
        XCTAssertFalse(run.lastGrads.isEmpty, "\(label): no gradients captured", file: file, line: line)
        XCTAssertLessThanOrEqual(gradError, tolerance, "\(label): last step's reduced gradients", file: file, line: line)
        XCTAssertEqual(Set(run.parameters.keys), Set(reference.parameters.keys), label, file: file, line: line)
        for (name, values) in run.parameters {
            paramError = max(paramError, zip(values, reference.parameters[name]!).map { abs($0 - $1) }.max() ?? 0)
        }
        XCTAssertLessThanOrEqual(paramError, parameterTolerance ?? tolerance, "\(label): parameters after \(run.losses.count) steps", file: file, line: line)
        XCTAssertEqual(Set(run.masters.keys), Set(reference.masters.keys), "\(label): master keys", file: file, line: line)
        var masterError: Float = 0
        for (name, values) in run.masters {
            masterError = max(masterError, zip(values, reference.masters[name]!).map { abs($0 - $1) }.max() ?? 0)
        }
        XCTAssertLessThanOrEqual(masterError, tolerance, "\(label): fp32 masters", file: file, line: line)
        if ProcessInfo.processInfo.environment["DP_TEST_VERBOSE"] != nil {
            print("\(label): max |diff| grads \(gradError), parameters \(paramError), masters \(masterError)")
        }
    }
}
