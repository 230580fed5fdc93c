import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// `--grad-reduce-in-bf16` (Megatron's `grad_reduce_in_fp32` off): bf16 parameters' gradients are accumulated
/// over micro-batches and reduced over data-parallel ranks in a bf16 grad buffer, and the optimizer updates
/// from fp32 copies of the result.
final class GradReduceInBF16Tests: XCTestCase {
    static func bf16(_ x: Float) -> Float { Tensor(shape: [1], values: [x]).cast(to: .bfloat16).floats()[0] }

    /// Rank r's two micro-batch gradients of the toy's weight: sums that bf16 rounds (1 + 2^-8 ties to 1,
    /// 3 + 0.01 goes to 3.015625, 100 + 0.3 to 100.5).
    static func microBatches(rank r: Int) -> (first: [Float], second: [Float]) {
        let s = Float(r + 1)
        return ([1 * s, 3 * s, 100 * s], [s / 256, 0.01 * s, 0.3 * s])
    }

    /// What each rank accumulates: the micro-batch gradients (bf16, as the parameters) summed in `accumulate`.
    static func accumulated(rank r: Int, inBF16: Bool) -> [Float] {
        let (first, second) = microBatches(rank: r)
        return zip(first, second).map { a, b in inBF16 ? bf16(bf16(a) + bf16(b)) : bf16(a) + bf16(b) }
    }

    /// The mean over two ranks as the collective makes it: each rank's values scaled by 1/2, summed, stored
    /// once in the buffer's dtype.
    static func reduced(inBF16: Bool) -> [Float] {
        zip(accumulated(rank: 0, inBF16: inBF16), accumulated(rank: 1, inBF16: inBF16)).map { a, b in
            inBF16 ? bf16(0.5 * a + 0.5 * b) : 0.5 * a + 0.5 * b
        }
    }

    func testTwoRanksAccumulateAndReduceInTheBF16Buffer() throws {
        let results = try DistributedDataParallelTests.runRanks(2) { dp -> ([Float], [Float], DType, DType) in
            let toy = DistributedDataParallelTests.Toy(dtype: .bfloat16)
            let ddp = try DistributedDataParallel(parameters: toy.named, config: DistributedDataParallelConfig(gradReduceInFP32: false),
                                                  dataParallelGroup: dp)
            try ddp.zeroGradBuffer()
            let (first, second) = Self.microBatches(rank: dp.rank)
            ddp.noSync { toy.backward(first) }
            let local = toy.weight.grad!.floats()
            toy.backward(second)
            try ddp.finishGradSync()
            return (local, toy.weight.grad!.floats(), ddp.buffers[0].gradDType, toy.weight.grad!.dtype)
        }
        XCTAssertNotEqual(Self.reduced(inBF16: true), Self.reduced(inBF16: false), "the case must tell bf16 from fp32 accumulation")
        for (rank, (first, weight, bufferType, gradType)) in results.enumerated() {
            XCTAssertEqual(bufferType, .bfloat16)
            XCTAssertEqual(gradType, .bfloat16, ".grad is a view into the bf16 buffer")
            XCTAssertEqual(first, Self.microBatches(rank: rank).first.map(Self.bf16))
            XCTAssertEqual(weight, Self.reduced(inBF16: true))
        }
    }

    /// The distributed optimizer reduce-scatters the bf16 buffer and steps from an fp32 copy: SGD with lr 1
    /// leaves each bf16 weight at bf16(w - g) for the bf16-reduced g.
    func testDistributedOptimizerStepsFromTheBF16ReducedGradients() throws {
        let results = try DistributedDataParallelTests.runRanks(2) { dp -> [Float] in
            let toy = DistributedDataParallelTests.Toy(dtype: .bfloat16)
            let config = DistributedDataParallelConfig(useDistributedOptimizer: true, gradReduceInFP32: false)
            let ddp = try DistributedDataParallel(parameters: toy.named, config: config, dataParallelGroup: dp)
            let optimizer = try DistributedOptimizer(ddp: ddp, groups: [ParamGroup(parameters: toy.named)], rule: try SGDRule())
            let schedule = OptimizerParamScheduler.Configuration(maxLR: 1, lrDecaySteps: 10, lrDecayStyle: .constant,
                                                                 startWD: 0, endWD: 0, wdIncrSteps: 10)
            try optimizer.zeroGrad()
            let (first, second) = Self.microBatches(rank: dp.rank)
            ddp.noSync { toy.backward(first) }
            toy.backward(second)
            try optimizer.step(scheduler: try OptimizerParamScheduler(schedule, groups: [ParamGroupOverride()]))
            try ddp.finishParamGather()
            return toy.weight.floats()
        }
        let expected = zip([Float(0.5), -1, 2], Self.reduced(inBF16: true)).map { Self.bf16($0 - $1) }
        for weight in results { XCTAssertEqual(weight, expected) }
    }

    /// On one rank (no DDP) the optimizer's own main grads are bf16 and accumulate there.
    func testOneRankAccumulatesInBF16MainGrads() throws {
        let toy = DistributedDataParallelTests.Toy(dtype: .bfloat16)
        let optimizer = MixedPrecisionOptimizer(groups: [ParamGroup(parameters: toy.named)], rule: try SGDRule(),
                                                mainGradDType: .bfloat16)
        optimizer.zeroGrad()
        let (first, second) = Self.microBatches(rank: 0)
        toy.backward(first)
        toy.backward(second)
        XCTAssertEqual(toy.weight.grad?.dtype, .bfloat16)
        XCTAssertEqual(toy.weight.grad!.floats(), Self.accumulated(rank: 0, inBF16: true))
    }
}
