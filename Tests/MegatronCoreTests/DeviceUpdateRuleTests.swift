import XCTest
import MegatronTensor
@testable import MegatronCore

final class DeviceUpdateRuleTests: XCTestCase {
    /// The tensor-op AdamW / Adam (what runs on GPUs) follows the fixture-tested buffer rule within fp32 rounding.
    func testTensorFormMatchesBufferFormOverSteps() throws {
        for rule in [try AdamRule.adamW(), try AdamRule.adam()] {
            let initial = Tensor.normal([257], generator: PhiloxGenerator(seed: 1)).floats()
            var buffer = initial, m = [Float](repeating: 0, count: 257), v = m
            let param = Tensor(shape: [257], values: initial)
            let state = [Tensor.zeros([257]), Tensor.zeros([257])]
            for step in 1...5 {
                let grad = Tensor.normal([257], generator: PhiloxGenerator(seed: UInt64(10 + step)))
                let g = grad.floats()
                buffer.withUnsafeMutableBufferPointer { p in
                    m.withUnsafeMutableBufferPointer { mp in
                        v.withUnsafeMutableBufferPointer { vp in
                            g.withUnsafeBufferPointer { gp in
                                rule.update(param: p, grad: gp, state: [mp, vp], step: step, lr: 1e-2, weightDecay: 0.1)
                            }
                        }
                    }
                }
                rule.update(param: param, grad: grad, state: state, step: step, lr: 1e-2, weightDecay: 0.1)
            }
            for (a, b) in zip(param.floats(), buffer) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b))) }
            for (a, b) in zip(state[1].floats(), v) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1e-3, abs(b))) }
        }
    }
}
