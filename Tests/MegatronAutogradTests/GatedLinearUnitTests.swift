import Foundation
import XCTest
import MegatronTensor
@testable import MegatronAutograd

/// Gated linear units as Megatron's MLP applies them (`MLP.forward`'s glu): quick GeGLU with a linear offset and a
/// clamp (gpt-oss), SwiGLU; values against the formula and gradients by finite differences.
final class GatedLinearUnitTests: XCTestCase {
    /// Gate and linear values on both sides of the clamp (1.3), none within the finite differences' step of it.
    let x = Tensor(shape: [2, 6], values: [-2.1, -0.4, 0.7, 1.9, 0.2, -1.6,   -1.8, 0.5, 2.2, -0.9, 1.5, 0.05])

    func testQuickGeGLUWithOffsetAndClampFollowsMegatron() {
        let unit = GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 1.3)
        let y = Ops.gatedLinearUnit(x, unit).floats(), v = x.floats()
        for row in 0..<2 {
            for c in 0..<3 {
                let gate = min(v[row * 6 + c], 1.3), linear = min(max(v[row * 6 + 3 + c], -1.3), 1.3)
                let quickGelu = gate / (1 + Foundation.exp(-1.702 * gate))
                XCTAssertEqual(y[row * 3 + c], quickGelu * (linear + 1), accuracy: 1e-6)
            }
        }
        XCTAssertEqual(Ops.swiglu(x).floats(), Ops.gatedLinearUnit(x, GatedLinearUnit(gate: .silu)).floats())
    }

    func testGradientsByFiniteDifferences() {
        for unit in [GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 1.3), GatedLinearUnit(gate: .quickGelu, linearOffset: 0.5),
                     GatedLinearUnit(gate: .silu, clampValue: 1.3), .swiglu] {
            checkGradients([x, sample([4, 3], seed: 3)]) {
                Functional.linear(activationOf: $0[0], .glu(unit), weight: $0[1], bias: nil)
            }
        }
    }

    /// A clamped input gets no gradient (torch's clamp backward).
    func testClampedInputsGetNoGradient() {
        let unit = GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 1.3)
        let dx = Ops.gatedLinearUnitBackward(x, gradOutput: Tensor.ones([2, 3]), unit).floats(), v = x.floats()
        for row in 0..<2 {
            for c in 0..<3 {
                XCTAssertEqual(dx[row * 6 + c] == 0, v[row * 6 + c] > 1.3, "gate \(v[row * 6 + c])")
                XCTAssertEqual(dx[row * 6 + 3 + c] == 0, abs(v[row * 6 + 3 + c]) > 1.3, "linear \(v[row * 6 + 3 + c])")
            }
        }
    }
}
