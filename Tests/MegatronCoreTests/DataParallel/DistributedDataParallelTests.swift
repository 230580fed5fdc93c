import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// DDP and distributed-optimizer behaviour beyond the training equality: grad views, accumulation, errors,
/// skipped steps, and norms across groups.
final class DistributedDataParallelTests: XCTestCase {
    static func runRanks<T>(_ n: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        try DataParallelTrainingTests.runRanks(n, body)
    }

    /// Two small parameters whose gradients are `x` (weight) and 1 (bias) per unit of `y = sum(w * x + b)`.
    struct Toy {
        let weight: Tensor, bias: Tensor
        init(dtype: DType = .float32) {
            var w = Tensor(shape: [3], values: [0.5, -1, 2], dtype: dtype); w.requiresGrad = true
            var b = Tensor(shape: [1], values: [0.25], dtype: dtype); b.requiresGrad = true
            weight = w
            bias = b
        }
        var named: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }
        /// Backward of `sum(w * x) + biasScale * b`.
        func backward(_ x: [Float], biasScale: Float = 1) {
            ((weight * Tensor(shape: [3], values: x)).sum() + bias.sum() * Tensor(scalar: biasScale)).backward()
        }
    }

    func testGradsAreViewsIntoTheBufferAndAccumulateAcrossMicroBatches() throws {
        let results = try Self.runRanks(2) { dp -> ([Float], [Float], Bool) in
            let toy = Toy()
            let ddp = try DistributedDataParallel(parameters: toy.named, config: DistributedDataParallelConfig(), dataParallelGroup: dp)
            try ddp.zeroGradBuffer()
            let sharesStorage = toy.weight.grad!.storage === ddp.buffers[0].gradData.storage
            let r = Float(dp.rank + 1)
            ddp.noSync { toy.backward([1 * r, 2 * r, 3 * r]) }
            toy.backward([10 * r, 20 * r, 30 * r])
            try ddp.finishGradSync()
            return (toy.weight.grad!.floats(), toy.bias.grad!.floats(), sharesStorage)
        }
        for (weight, bias, shares) in results {
            XCTAssertTrue(shares, ".grad must be a view into the DDP grad buffer")
            // Rank r accumulates 11 r (1, 2, 3); the mean over ranks 1 and 2 is 16.5 (1, 2, 3).
            XCTAssertEqual(weight, [16.5, 33, 49.5])
            XCTAssertEqual(bias, [2], "two micro-batches on each rank, averaged")
        }
    }

    func testOverlapWithoutNoSyncIsReportedAtFinish() throws {
        let errors = try Self.runRanks(2) { dp -> String in
            let toy = Toy()
            let ddp = try DistributedDataParallel(parameters: toy.named, config: DistributedDataParallelConfig(overlapGradReduce: true),
                                                  dataParallelGroup: dp)
            try ddp.zeroGradBuffer()
            toy.backward([1, 1, 1])
            toy.backward([1, 1, 1])
            do { try ddp.finishGradSync(); return "" } catch { return "\(error)" }
        }
        for message in errors { XCTAssertTrue(message.contains("noSync"), message) }
    }

    func testOverlapWithAParameterWithoutGradientNamesIt() throws {
        let errors = try Self.runRanks(2) { dp -> String in
            let toy = Toy()
            let ddp = try DistributedDataParallel(parameters: toy.named, config: DistributedDataParallelConfig(overlapGradReduce: true),
                                                  dataParallelGroup: dp)
            try ddp.zeroGradBuffer()
            (toy.weight.sum()).backward()
            do { try ddp.finishGradSync(); return "" } catch { return "\(error)" }
        }
        for message in errors { XCTAssertTrue(message.contains("'bias'"), message) }
    }

    func testNonLeafParameterIsRejected() throws {
        _ = try Self.runRanks(1) { dp in
            let toy = Toy()
            XCTAssertThrowsError(try DistributedDataParallel(parameters: [("twice", toy.weight * Tensor(scalar: 2))],
                                                             config: DistributedDataParallelConfig(), dataParallelGroup: dp)) {
                XCTAssertTrue("\($0)".contains("'twice'"))
            }
        }
    }

    /// A NaN in one rank's local gradient reaches only the rank owning that element after the
    /// reduce-scatter; every rank must still skip the step and keep its parameters.
    func testNonFiniteGradientOnOneRankSkipsTheStepEverywhere() throws {
        let outcomes = try Self.runRanks(2) { dp -> (Bool, Float, [Float]) in
            let toy = Toy()
            let config = DistributedDataParallelConfig(useDistributedOptimizer: true)
            let ddp = try DistributedDataParallel(parameters: toy.named, config: config, dataParallelGroup: dp)
            let groups = [ParamGroup(parameters: toy.named.map { (name: $0.0, tensor: $0.1) })]
            let optimizer = try DistributedOptimizer(ddp: ddp, groups: groups, rule: try AdamRule.adamW())
            let scheduler = try DPTraining.scheduler(groups)
            try optimizer.zeroGrad()
            toy.backward([1, 2, 3])
            if dp.rank == 1 { toy.weight.grad!.pointer(as: Float.self)[0] = .nan }
            let report = try optimizer.step(scheduler: scheduler, clipGrad: 1)
            return (report.updated, report.gradNorm, toy.weight.floats())
        }
        for (updated, norm, weight) in outcomes {
            XCTAssertFalse(updated)
            XCTAssertEqual(norm, .infinity)
            XCTAssertEqual(weight, [0.5, -1, 2])
        }
    }

    /// Loss scaling: gradients of a loss scaled by 8 with `lossScale: 8` give the unscaled step.
    func testLossScaleIsUndoneBeforeTheUpdate() throws {
        let weights = try Self.runRanks(2) { dp -> [[Float]] in
            try [Float(1), 8].map { scale in
                let toy = Toy()
                let ddp = try DistributedDataParallel(parameters: toy.named, config: DistributedDataParallelConfig(useDistributedOptimizer: true),
                                                      dataParallelGroup: dp)
                let groups = [ParamGroup(parameters: toy.named.map { (name: $0.0, tensor: $0.1) })]
                let optimizer = try DistributedOptimizer(ddp: ddp, groups: groups, rule: try AdamRule.adam())
                try optimizer.zeroGrad()
                toy.backward([scale, 2 * scale, 3 * scale], biasScale: scale)
                let report = try optimizer.step(scheduler: try DPTraining.scheduler(groups), lossScale: scale)
                XCTAssertEqual(report.gradNorm, (14 + 1 as Float).squareRoot(), accuracy: 1e-5)
                return toy.weight.floats()
            }
        }
        for pair in weights { XCTAssertEqual(pair[0], pair[1]) }
    }

    /// TP 2 x DP 2 (Megatron's order: rank = dp * 2 + tp). Each TP rank holds a different half of `sharded`;
    /// `norm` is duplicated on both TP ranks and must count once: norm^2 = (1 + 4) + (4 + 16) + (9 + 16) = 50.
    func testGradNormCountsTensorParallelDuplicatesOnce() throws {
        let norms = try Self.runRanks(4) { world -> [Float] in
            let tp = try world.split(color: world.rank / 2, key: world.rank)
            let dp = try world.split(color: world.rank % 2, key: world.rank)
            let stats = GradientStatsGroups(groups: [tp], tensorParallelRank: tp.rank, duplicatedParameters: ["norm"])
            func model() -> [(String, Tensor)] {
                var sharded = Tensor(shape: [2], values: [0, 0]); sharded.requiresGrad = true
                var norm = Tensor(shape: [2], values: [0, 0]); norm.requiresGrad = true
                return [("sharded", sharded), ("norm", norm)]
            }
            func backward(_ named: [(String, Tensor)]) {
                let t = Float(tp.rank + 1)
                ((named[0].1 * Tensor(shape: [2], values: [t, 2 * t])).sum()
                    + (named[1].1 * Tensor(shape: [2], values: [3, 4])).sum()).backward()
            }
            // Plain optimizer: the norm spans the TP group.
            let plainModel = model()
            let groups = [ParamGroup(parameters: plainModel.map { (name: $0.0, tensor: $0.1) })]
            let plain = MixedPrecisionOptimizer(groups: groups, rule: try AdamRule.adamW())
            plain.zeroGrad()
            backward(plainModel)
            let plainNorm = try plain.step(scheduler: try DPTraining.scheduler(groups), gradStats: stats).gradNorm
            // Distributed optimizer: the norm spans the DP shards and the TP group.
            let shardedModel = model()
            let ddp = try DistributedDataParallel(parameters: shardedModel, config: DistributedDataParallelConfig(useDistributedOptimizer: true),
                                                  dataParallelGroup: dp)
            let shardedGroups = [ParamGroup(parameters: shardedModel.map { (name: $0.0, tensor: $0.1) })]
            let distributed = try DistributedOptimizer(ddp: ddp, groups: shardedGroups, rule: try AdamRule.adamW(),
                                                       modelParallelStats: stats)
            try distributed.zeroGrad()
            backward(shardedModel)
            let distributedNorm = try distributed.step(scheduler: try DPTraining.scheduler(shardedGroups)).gradNorm
            return [plainNorm, distributedNorm]
        }
        for pair in norms {
            XCTAssertEqual(pair[0], Float(50).squareRoot(), accuracy: 1e-6)
            XCTAssertEqual(pair[1], Float(50).squareRoot(), accuracy: 1e-6)
        }
    }

    func testBroadcastParametersCopiesRankZerosValuesIntoParametersAndParamBuffer() throws {
        let results = try Self.runRanks(2) { dp -> ([Float], [Float]) in
            let model = try DPTraining.model(.float32)
            if dp.rank == 1 { withoutGrad { for (_, p) in model.namedParameters() { Ops.copy(Tensor.zeros(p.shape), into: p) } } }
            let ddp = try DistributedDataParallel(parameters: model.namedParameters(),
                                                  config: DistributedDataParallelConfig(useDistributedOptimizer: true), dataParallelGroup: dp)
            try ddp.broadcastParameters()
            return (model.namedParameters().flatMap { $0.1.floats() }, ddp.buffers[0].paramData!.floats())
        }
        XCTAssertEqual(results[0].0, results[1].0)
        XCTAssertEqual(results[0].1, results[1].1)
        XCTAssertTrue(results[1].0.contains { $0 != 0 }, "rank 1 received rank 0's nonzero weights")
    }

    /// `overlapParamGather` with forward stages: `zeroGradBuffer` leaves every bucket's all-gather to the
    /// forward, and each stage's forward waits for exactly the buckets that hold its parameters.
    func testForwardStagesWaitForTheirOwnBuckets() throws {
        let results = try Self.runRanks(2) { dp -> [Int] in
            let model = try DPTraining.model(.float32)
            let named = model.namedParameters()
            var config = DistributedDataParallelConfig(overlapGradReduce: true, useDistributedOptimizer: true, overlapParamGather: true)
            config.bucketSize = 4000
            let ddp = try DistributedDataParallel(parameters: named, config: config, dataParallelGroup: dp)
            ddp.waitForParamGathersInForward(of: model.forwardStages)
            ddp.waitForParamGathersInForward(of: model.forwardStages)   // replaces the first call's hooks
            let hooksPerStage = Set(model.forwardStages.map(\.forwardHookCount))
            let groups = try ParamGroup.megatronDefault(named)
            let optimizer = try DistributedOptimizer(ddp: ddp, groups: groups, rule: try DPTraining.adamW())
            try ddp.zeroGradBuffer()
            _ = DPTraining.microStep(model, step: 0, samples: DPTraining.microBatch(rank: dp.rank, dataParallelSize: 2, m: 0), of: 1)
            try optimizer.step(scheduler: try DPTraining.scheduler(groups))
            try ddp.zeroGradBuffer()
            let afterZero = ddp.pendingParamGathers
            let hidden = Tensor.zeros([1, 4, model.config.hiddenSize])
            _ = model.decoder.layers[1](hidden)
            let afterLayer = ddp.pendingParamGathers
            let batch = DPTraining.batch(step: 0, samples: 0..<1)
            _ = model.loss(tokens: batch.tokens, labels: batch.labels)
            let layout = ddp.buffers[0].layout
            let layer1 = Set(ddp.buffers[0].parameters.indices.filter { ddp.buffers[0].parameters[$0].name.hasPrefix("decoder.layers.1.") }
                .map { layout.parameterBuckets[$0] })
            return [ddp.bucketCount, afterZero, afterLayer, ddp.pendingParamGathers, layer1.count, hooksPerStage == [1] ? 1 : 0]
        }
        for counts in results {
            let (buckets, afterZero, afterLayer, afterForward, layer1) = (counts[0], counts[1], counts[2], counts[3], counts[4])
            XCTAssertGreaterThan(buckets, 3, "the model should span several buckets")
            XCTAssertEqual(afterZero, buckets, "zeroGradBuffer leaves every gather to the forward stages")
            XCTAssertEqual(afterLayer, buckets - layer1, "layer 1's forward waits for its own buckets only")
            XCTAssertEqual(afterForward, 0, "a whole forward waits for every bucket")
            XCTAssertEqual(counts[5], 1, "each stage holds one pre-forward hook after two registrations")
        }
    }

    /// With the distributed optimizer, parameters that own their storage move into the parameter buffer with
    /// their values: a write there is a write to the parameter. A parameter that is a view of a larger storage
    /// keeps its memory and takes the buffer's values by copy.
    func testParametersLiveInTheParameterBuffer() throws {
        let whole = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        var owner = Tensor(shape: [3], values: [7, 8, 9]); owner.requiresGrad = true
        var view = whole.narrowed(0, start: 1, length: 1).reshaped([3]); view.requiresGrad = true
        let ddp = try DistributedDataParallel(parameters: [("owner", owner), ("view", view)],
                                              config: DistributedDataParallelConfig(useDistributedOptimizer: true),
                                              dataParallelGroup: try XCTUnwrap(Self.runRanks(1) { $0 }.first))
        let buffer = ddp.buffers[0]
        XCTAssertEqual(buffer.parametersInParamData, [0])
        XCTAssertEqual(owner.floats(), [7, 8, 9], "moving into the buffer keeps the values")
        XCTAssertEqual(view.floats(), [4, 5, 6])
        let paramData = try XCTUnwrap(buffer.paramData)
        withoutGrad { Ops.copy(Tensor(shape: [paramData.count], values: (0..<paramData.count).map { Float(-$0) }), into: paramData) }
        XCTAssertEqual(owner.floats(), paramData.floats()[buffer.layout.parameterRanges[0]].map { $0 })
        XCTAssertEqual(view.floats(), [4, 5, 6], "a view parameter changes only by copy")
        buffer.copyParamBufferIntoParameters(bucket: 0)
        XCTAssertEqual(view.floats(), paramData.floats()[buffer.layout.parameterRanges[1]].map { $0 })
        XCTAssertEqual(whole.floats()[0..<3], [1, 2, 3], "the rest of the view's storage is untouched")
    }
}
