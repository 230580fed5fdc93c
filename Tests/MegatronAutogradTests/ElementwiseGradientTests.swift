import XCTest
import MegatronTensor
@testable import MegatronAutograd

final class ElementwiseGradientTests: XCTestCase {
    let a = sample([3, 4], seed: 1)
    let b = sample([3, 4], seed: 2)
    let row = sample([4], seed: 3)
    let positive = sample([3, 4], seed: 4, low: 0.5, high: 2)

    func testArithmeticWithBroadcasting() {
        checkGradients([a, row]) { $0[0] + $0[1] }
        checkGradients([a, row]) { $0[0] - $0[1] }
        checkGradients([a, row]) { $0[0] * $0[1] }
        checkGradients([a, positive]) { $0[0] / $0[1] }
        checkGradients([a]) { -$0[0] * 3 + 1 }
        checkGradients([a, b]) { $0[0].maximum($0[1]) }
        checkGradients([a, b]) { $0[0].minimum($0[1]) }
    }

    func testPowers() {
        checkGradients([positive]) { $0[0].pow(2.5) }
        checkGradients([positive, a]) { Tensor.binary($0[0], $0[1], .pow) }
    }

    func testUnaryFunctions() {
        for op: UnaryOp in [.neg, .exp, .tanh, .abs, .sigmoid, .relu, .silu, .geluTanh, .geluErf, .squaredRelu] {
            checkGradients([a]) { $0[0].apply(op) }
        }
        for op: UnaryOp in [.log, .sqrt, .rsqrt] {
            checkGradients([positive]) { $0[0].apply(op) }
        }
    }

    func testWhereAndMaskedFill() {
        let mask = a.gt(b)
        checkGradients([a, b]) { select(mask, $0[0], $0[1]) }
        checkGradients([a]) { $0[0].maskedFill(mask, -5) }
    }

    func testUnaryValuesMatchReferenceFormulas() {
        let x = Tensor(shape: [3], values: [-1, 0.5, 2])
        XCTAssertEqual(Functional.gelu(x, approximate: false).floats()[2], 1.954_499_7, accuracy: 1e-6)
        XCTAssertEqual(Functional.gelu(x).floats()[2], 1.954_597_7, accuracy: 1e-6)
        XCTAssertEqual(Functional.silu(x).floats()[0], -0.268_941_43, accuracy: 1e-6)
    }
}
