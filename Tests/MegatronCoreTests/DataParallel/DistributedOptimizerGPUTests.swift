import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// The distributed optimizer's multi-tensor step on a GPU (a data-parallel group of one over NCCL, so
/// every bucket is one shard cut into parameter pieces) against `MixedPrecisionOptimizer`'s step on the
/// same gradients.
final class DistributedOptimizerGPUTests: XCTestCase {
    /// bf16 and fp32 parameters (two buffers, so the lists span buffers and buckets), two groups (weight
    /// decay on one), and clipping that engages: 3 steps leave the same parameters, norms and
    /// optimizer state as the unsharded optimizer, within fp32 rounding (the norm sums in another order).
    func testShardedStepMatchesTheUnshardedOptimizer() throws {
        try requireGPU("distributed optimizer GPU test")
        let group: NCCLCommunicator
        do { group = try NCCLCommunicator.makeAll(ordinals: [0])[0] } catch { throw XCTSkip("NCCL not usable here: \(error)") }
        let gpu = Device.cuda(0)
        func make() -> [(String, Tensor)] {
            onDevice(gpu) {
                [("w", parameter(Tensor.normal([300, 7], generator: PhiloxGenerator(seed: 1)).cast(to: .bfloat16))),
                 ("big", parameter(Tensor.normal([70_000], generator: PhiloxGenerator(seed: 2)).cast(to: .bfloat16))),
                 ("f", parameter(Tensor.normal([1000], generator: PhiloxGenerator(seed: 3)))),
                 ("b", parameter(Tensor.normal([5], generator: PhiloxGenerator(seed: 4)).cast(to: .bfloat16)))]
            }
        }
        func groups(_ named: [(String, Tensor)]) -> [ParamGroup] {
            [ParamGroup(parameters: Array(named.prefix(3))),
             ParamGroup(parameters: [named[3]], override: ParamGroupOverride(wdMult: 0))]
        }
        let config = OptimizerParamScheduler.Configuration(maxLR: 1e-2, lrDecaySteps: 10, lrDecayStyle: .constant,
                                                           startWD: 0.1, endWD: 0.1, wdIncrSteps: 10)
        let scheduler = try OptimizerParamScheduler(config, groups: [ParamGroupOverride(), ParamGroupOverride(wdMult: 0)])
        let (unshardedNamed, shardedNamed) = (make(), make())
        let unsharded = MixedPrecisionOptimizer(groups: groups(unshardedNamed), rule: try AdamRule.adamW(beta2: 0.95))
        let ddp = try DistributedDataParallel(parameters: shardedNamed,
                                              config: DistributedDataParallelConfig(useDistributedOptimizer: true, bucketSize: 2000),
                                              dataParallelGroup: group)
        let sharded = try DistributedOptimizer(ddp: ddp, groups: groups(shardedNamed), rule: try AdamRule.adamW(beta2: 0.95))
        for step in 1...3 {
            unsharded.zeroGrad()
            try sharded.zeroGrad()
            for (i, ((_, u), (_, s))) in zip(unshardedNamed, shardedNamed).enumerated() {
                let grad = Tensor.normal(u.shape, std: 3, generator: PhiloxGenerator(seed: UInt64(100 * step + i))).to(gpu)
                Ops.copy(grad, into: u.autograd!.gradBuffer()!)
                Ops.copy(grad, into: s.grad!)
            }
            let expected = try unsharded.step(scheduler: scheduler, clipGrad: 1, gradStats: GradientStatsGroups())
            let found = try sharded.step(scheduler: scheduler, clipGrad: 1)
            XCTAssertTrue(found.updated)
            XCTAssertEqual(found.gradNorm, expected.gradNorm, accuracy: 1e-5 * expected.gradNorm, "norm at step \(step)")
        }
        try ddp.finishParamGather()
        for ((name, u), (_, s)) in zip(unshardedNamed, shardedNamed) {
            let tolerance: Float = u.dtype == .bfloat16 ? 8e-3 : 1e-5
            for (e, f) in zip(u.floats(), s.floats()) { XCTAssertEqual(f, e, accuracy: tolerance * max(1, abs(e)), name) }
        }
        let state = try sharded.fullStateDict()
        for (key, expected) in unsharded.stateTensors() {
            let found = try XCTUnwrap(state[key], key).floats()
            for (e, f) in zip(expected.floats(), found) { XCTAssertEqual(f, e, accuracy: 1e-5 * max(1, abs(e)), key) }
        }
    }
}
