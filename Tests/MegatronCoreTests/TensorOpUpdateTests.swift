import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// The rules' tensor-op forms (the update backend for GPU rules without a multi-tensor kernel) against their
/// host forms, which OptimizerRuleTests holds to torch's golden numbers.
final class TensorOpUpdateTests: XCTestCase {
    /// The tensor-op AdamW / Adam (what runs on GPUs) follows the fixture-tested buffer rule within fp32 rounding.
    func testTensorFormMatchesBufferFormOverSteps() throws {
        for rule in [try AdamRule.adamW(), try AdamRule.adam()] {
            let initial = Tensor.normal([257], generator: PhiloxGenerator(seed: 1)).floats()
            let buffer = Tensor(shape: [257], values: initial), bufferState = [Tensor.zeros([257]), Tensor.zeros([257])]
            let param = Tensor(shape: [257], values: initial), state = [Tensor.zeros([257]), Tensor.zeros([257])]
            for step in 1...5 {
                let grad = Tensor.normal([257], generator: PhiloxGenerator(seed: UInt64(10 + step)))
                Self.bufferUpdate(rule, param: buffer, grad: grad, state: bufferState, step: step, lr: 1e-2, weightDecay: 0.1)
                rule.update(param: param, grad: grad, state: state, step: step, lr: 1e-2, weightDecay: 0.1)
            }
            for (a, b) in zip(param.floats(), buffer.floats()) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b))) }
            for (a, b) in zip(state[1].floats(), bufferState[1].floats()) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1e-3, abs(b))) }
        }
    }

    /// SGD's tensor form (what runs on GPUs) equals its buffer form, which is fixture-tested against torch.
    func testSGDTensorFormMatchesBufferForm() throws {
        for rule in [try SGDRule(), try SGDRule(momentum: 0.9), try SGDRule(momentum: 0.9, nesterov: true),
                     try SGDRule(momentum: 0.9, dampening: 0.25)] {
            let initial = Tensor.normal([257], generator: PhiloxGenerator(seed: 2)).floats()
            let buffer = Tensor(shape: [257], values: initial), bufferState = (0..<rule.stateCount).map { _ in Tensor.zeros([257]) }
            let param = Tensor(shape: [257], values: initial), state = (0..<rule.stateCount).map { _ in Tensor.zeros([257]) }
            for step in 1...4 {
                let grad = Tensor.normal([257], generator: PhiloxGenerator(seed: UInt64(20 + step)))
                Self.bufferUpdate(rule, param: buffer, grad: grad, state: bufferState, step: step, lr: 0.1, weightDecay: 0.01)
                rule.update(param: param, grad: grad, state: state, step: step, lr: 0.1, weightDecay: 0.01)
            }
            for (a, b) in zip(param.floats(), buffer.floats()) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(rule)") }
            for (a, b) in zip(state.first?.floats() ?? [], bufferState.first?.floats() ?? []) {
                XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)))
            }
        }
    }

    /// The buffer form of `rule` (what runs on the CPU) over contiguous fp32 CPU tensors, in place.
    private static func bufferUpdate(_ rule: UpdateRule, param: Tensor, grad: Tensor, state: [Tensor], step: Int, lr: Float,
                                     weightDecay: Float) {
        func buffer(_ t: Tensor) -> UnsafeMutableBufferPointer<Float> {
            UnsafeMutableBufferPointer(start: t.pointer(as: Float.self), count: t.count)
        }
        rule.update(param: buffer(param), grad: UnsafeBufferPointer(buffer(grad)), state: state.map(buffer), step: step,
                    lr: lr, weightDecay: weightDecay)
    }

    /// The tensor-op update (SGD on a GPU) equals the host update when the grad norm spans tensor-parallel
    /// ranks: `GradientClipping` clips both by one norm, with the duplicated `norm` parameter counted once.
    /// Rank r's gradients are sharded = [r + 1, 2 (r + 1)], norm = [3, 4]: norm^2 = 1 + 4 + 4 + 16 + 9 + 16 = 50.
    func testTensorOpStepEqualsHostStepWithTheNormAcrossTensorParallelRanks() throws {
        let results = try ThreadCommunicator.run(worldSize: 2) { tp -> [[Float]] in
            let stats = GradientStatsGroups(groups: [tp], tensorParallelRank: tp.rank, duplicatedParameters: ["norm"])
            func train(tensorOps: Bool) throws -> [Float] {
                var sharded = Tensor(shape: [2], values: [1, -1]), norm = Tensor(shape: [2], values: [0.5, 0.5])
                sharded.requiresGrad = true
                norm.requiresGrad = true
                let groups = [ParamGroup(parameters: [(name: "sharded", tensor: sharded), (name: "norm", tensor: norm)])]
                let optimizer = MixedPrecisionOptimizer(groups: groups, rule: try SGDRule(momentum: 0.9))
                if tensorOps { optimizer.updateBackend = .tensorOps }
                let scheduler = try DPTraining.scheduler(groups)
                var norms: [Float] = []
                for _ in 0..<2 {
                    optimizer.zeroGrad()
                    let t = Float(tp.rank + 1)
                    ((sharded * Tensor(shape: [2], values: [t, 2 * t])).sum() + (norm * Tensor(shape: [2], values: [3, 4])).sum()).backward()
                    let report = try optimizer.step(scheduler: scheduler, clipGrad: 1, gradStats: stats)
                    norms.append(report.gradNorm)
                }
                return norms + sharded.floats() + norm.floats()
            }
            return [try train(tensorOps: false), try train(tensorOps: true)]
        }
        for rank in results {
            XCTAssertEqual(rank[0][0], Float(50).squareRoot(), accuracy: 1e-5)
            for (host, tensorOps) in zip(rank[0], rank[1]) { XCTAssertEqual(tensorOps, host, accuracy: 1e-6) }
        }
    }
}
