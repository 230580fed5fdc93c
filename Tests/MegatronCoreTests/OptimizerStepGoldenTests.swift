import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// Whole optimizer steps against torch (Fixtures/optim/optimizer_step.json, from
/// scripts/fixtures/make_optimizer_step_golden.py): loss-scaled gradients unscaled and checked for inf (step 3
/// holds one and is skipped), clipped by the global norm, then AdamW / SGD over two groups with lr and wd
/// multipliers. Both optimizers run the same `GradientClipping` and `UpdateRule.step`, on every backend.
///
/// Tolerance: 1e-6 relative plus 1e-7 absolute for the host backend (torch fuses multiply-adds; the norm is
/// summed in another order, so the clip coefficient differs in its last bits); the tensor-op and GPU backends
/// blend Adam's moments without torch's lerp and round differently, within 1e-5.
final class OptimizerStepGoldenTests: XCTestCase {
    struct Fixture: Decodable {
        struct Parameter: Decodable { var name: String; var shape: [Int] }
        struct Step: Decodable { var step: Int; var skipped: Bool; var gradNorm: Double?; var params: [[Double]] }
        struct Case: Decodable {
            var name: String, kind: String
            var beta1: Double?, beta2: Double?, eps: Double?, momentum: Double?, nesterov: Bool?
            var steps: [Step]
        }
        var parameters: [Parameter]
        var lossScale: Float, clipGrad: Float, lr: Double, lrMult: [Double], weightDecay: Double, skippedStep: Int
        var cases: [Case]
    }

    /// The optimizer under test, driven the same way whatever it is.
    struct Driver {
        var setGradients: ([Tensor]) throws -> Void
        var step: (OptimizerParamScheduler, Float, Float) throws -> MixedPrecisionOptimizer.StepReport
        var parameters: () throws -> [[Float]]
    }

    func testMixedPrecisionOptimizerMatchesTorch() throws {
        for backend in [UpdateBackend.host, .tensorOps] {
            try checkCases(label: "plain \(backend)", tolerance: backend == .host ? 1e-6 : 1e-5) { named, groups, rule in
                try Self.plainDriver(named, groups, rule, backend: backend)
            }
        }
    }

    /// Two data-parallel ranks (thread communicators) with identical gradients: the reduced gradients are the
    /// inputs, each rank updates its shard, and the gathered parameters follow torch.
    func testDistributedOptimizerMatchesTorch() throws {
        for backend in [UpdateBackend.host, .tensorOps] {
            let perRank = try ThreadCommunicator.run(worldSize: 2) { dp -> Int in
                try self.checkCases(label: "distributed \(backend) rank \(dp.rank)", tolerance: backend == .host ? 1e-6 : 1e-5) {
                    named, groups, rule in
                    try Self.distributedDriver(named, groups, rule, dp: dp, backend: backend)
                }
                return dp.rank
            }
            XCTAssertEqual(perRank, [0, 1])
        }
    }

    /// The GPU step (the multi-tensor AdamW kernel and norm kernel; SGD in tensor ops) against torch.
    func testGPUStepMatchesTorch() throws {
        let gpu = try requireGPU("optimizer step GPU golden test")
        try checkCases(label: "plain \(gpu)", tolerance: 1e-5, device: gpu) { named, groups, rule in
            try Self.plainDriver(named, groups, rule, backend: nil)
        }
    }

    /// The distributed optimizer on a GPU (a data-parallel group of one over NCCL): the kernels run over shard
    /// pieces, views at any element offset.
    func testGPUDistributedStepMatchesTorch() throws {
        let gpu = try requireGPU("distributed optimizer step GPU golden test")
        let group: NCCLCommunicator
        do { group = try NCCLCommunicator.makeAll(ordinals: [0])[0] } catch { throw XCTSkip("NCCL not usable here: \(error)") }
        try checkCases(label: "distributed \(gpu)", tolerance: 1e-5, device: gpu) { named, groups, rule in
            try Self.distributedDriver(named, groups, rule, dp: group, backend: nil)
        }
    }

    // MARK: - Drivers

    static func plainDriver(_ named: [(String, Tensor)], _ groups: [ParamGroup], _ rule: UpdateRule,
                            backend: UpdateBackend?) throws -> Driver {
        let optimizer = MixedPrecisionOptimizer(groups: groups, rule: rule)
        optimizer.updateBackend = backend
        return Driver(setGradients: { grads in
            optimizer.zeroGrad()
            for ((_, p), g) in zip(named, grads) { Ops.copy(g, into: p.autograd!.gradBuffer()!) }
        }, step: { scheduler, clip, scale in
            try optimizer.step(scheduler: scheduler, clipGrad: clip, lossScale: scale, gradStats: GradientStatsGroups())
        }, parameters: { named.map { $0.1.floats() } })
    }

    static func distributedDriver(_ named: [(String, Tensor)], _ groups: [ParamGroup], _ rule: UpdateRule, dp: Communicator,
                                  backend: UpdateBackend?) throws -> Driver {
        // A small bucket size spreads the parameters over several buckets and shard pieces.
        let ddp = try DistributedDataParallel(parameters: named,
                                              config: DistributedDataParallelConfig(useDistributedOptimizer: true, bucketSize: 40),
                                              dataParallelGroup: dp)
        let optimizer = try DistributedOptimizer(ddp: ddp, groups: groups, rule: rule)
        optimizer.updateBackend = backend
        return Driver(setGradients: { grads in
            try optimizer.zeroGrad()
            for ((_, p), g) in zip(named, grads) { Ops.copy(g, into: p.grad!) }
        }, step: { scheduler, clip, scale in
            try optimizer.step(scheduler: scheduler, clipGrad: clip, lossScale: scale)
        }, parameters: {
            try ddp.finishParamGather()
            return named.map { $0.1.floats() }
        })
    }

    // MARK: - Cases

    private func checkCases(label: String, tolerance: Double, device: Device = .cpu,
                            _ make: ([(String, Tensor)], [ParamGroup], UpdateRule) throws -> Driver) throws {
        let fixture = try loadOptimFixture("optimizer_step", as: Fixture.self)
        XCTAssertEqual(fixture.cases.map(\.name), ["adamw", "sgd_momentum", "sgd_nesterov"])
        for c in fixture.cases {
            let named = onDevice(device) {
                fixture.parameters.enumerated().map { k, p in
                    (p.name, parameter(Tensor(shape: p.shape, values: (0..<p.shape.reduce(1, *)).map {
                        OptimizerFixtureProblem.initialValue(k, $0)
                    })))
                }
            }
            let groups = [ParamGroup(parameters: [named[0], named[3]]),
                          ParamGroup(parameters: [named[1], named[2]],
                                     override: ParamGroupOverride(wdMult: 0, lrMult: fixture.lrMult[1]))]
            let scheduler = try OptimizerParamScheduler(
                .init(maxLR: fixture.lr, lrDecaySteps: 10, lrDecayStyle: .constant, startWD: fixture.weightDecay,
                      endWD: fixture.weightDecay, wdIncrSteps: 10),
                groups: groups.map(\.override))
            let rule: UpdateRule = c.kind == "adamw"
                ? try AdamRule.adamW(beta1: c.beta1!, beta2: c.beta2!, eps: c.eps!)
                : try SGDRule(momentum: c.momentum!, nesterov: c.nesterov!)
            let driver = try make(named, groups, rule)
            for expected in c.steps {
                let grads = fixture.parameters.indices.map { k in
                    var g = OptimizerFixtureProblem.gradient(k, count: named[k].1.count, step: expected.step)
                        .map { $0 * fixture.lossScale }
                    if expected.step == fixture.skippedStep && k == 2 { g[5] = .infinity }
                    return Tensor(shape: named[k].1.shape, values: g).to(device)
                }
                try driver.setGradients(grads)
                let report = try driver.step(scheduler, fixture.clipGrad, fixture.lossScale)
                let where_ = "\(label) \(c.name) step \(expected.step)"
                XCTAssertEqual(report.updated, !expected.skipped, where_)
                if let norm = expected.gradNorm {
                    assertClose(Double(report.gradNorm), norm, relative: tolerance, where_ + " grad norm")
                } else {
                    XCTAssertEqual(report.gradNorm, .infinity, where_)
                }
                for (k, values) in try driver.parameters().enumerated() {
                    assertClose(values, expected.params[k], relative: tolerance, absolute: tolerance / 10,
                                "\(where_) \(fixture.parameters[k].name)")
                }
            }
        }
    }
}
