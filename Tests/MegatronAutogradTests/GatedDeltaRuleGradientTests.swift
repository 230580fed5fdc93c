import XCTest
import MegatronTensor
@testable import MegatronAutograd

/// The gated delta rule's hand-written backward against finite differences, every operand at once.
final class GatedDeltaRuleGradientTests: XCTestCase {
    func testEveryOperandsGradientMatchesFiniteDifferences() {
        let (b, t, h, dk, dv) = (2, 6, 2, 3, 4)
        let q = sample([b, t, h, dk], seed: 1, low: -0.6, high: 0.6)
        let k = sample([b, t, h, dk], seed: 2, low: -0.6, high: 0.6)
        let v = sample([b, t, h, dv], seed: 3)
        let g = sample([b, t, h], seed: 4, low: -1, high: -0.2)
        let beta = sample([b, t, h], seed: 5, low: 0.2, high: 0.9)
        checkGradients([q, k, v, g, beta], tolerance: 5e-3, epsilon: 1e-2) {
            Functional.gatedDeltaRule(q: $0[0], k: $0[1], v: $0[2], g: $0[3], beta: $0[4], scale: 0.5)
        }
    }

    /// The first step of a zero state is `o = beta (q . k) scale v`: the recurrence's own closed form.
    func testFirstStepIsTheScaledWrite() {
        let q = Tensor(shape: [1, 1, 1, 2], values: [1, 2]), k = Tensor(shape: [1, 1, 1, 2], values: [0.5, -1])
        let v = Tensor(shape: [1, 1, 1, 3], values: [1, -2, 4])
        let (g, beta) = (Tensor(shape: [1, 1, 1], values: [-0.3]), Tensor(shape: [1, 1, 1], values: [0.25]))
        let o = Functional.gatedDeltaRule(q: q, k: k, v: v, g: g, beta: beta, scale: 2).floats()
        let expected: [Float] = [1, -2, 4].map { 0.25 * (1 * 0.5 + 2 * -1) * 2 * $0 }
        for (a, e) in zip(o, expected) { XCTAssertEqual(a, e, accuracy: 1e-6) }
    }
}
