import XCTest
import MegatronTensor
@testable import MegatronAutograd

final class RecomputedActivationTests: XCTestCase {
    let x = sample([3, 5, 8], seed: 21)
    let weight = sample([6, 8], seed: 22)
    let bias = sample([6], seed: 23)

    func testGradientsAgainstFiniteDifferences() {
        for activation in [RecomputedActivation.unary(.geluTanh), .unary(.geluErf), .unary(.silu), .unary(.squaredRelu)] {
            checkGradients([x, weight, bias]) { Functional.linear(activationOf: $0[0], activation, weight: $0[1], bias: $0[2]) }
        }
        checkGradients([x, sample([6, 4], seed: 24)]) { Functional.linear(activationOf: $0[0], .swiglu, weight: $0[1], bias: nil) }
    }

    /// Same values and gradients as the activation followed by `linear` (fp32), into fp32 main grads
    /// (the fused weight-gradient path) as into fresh ones.
    func testMatchesTheComposition() {
        for withMainGrads in [false, true] {
            func run(_ f: (Tensor, Tensor, Tensor) -> Tensor) -> [[Float]] {
                var (a, w, b) = (x.detached(), weight.detached(), bias.detached())
                a.requiresGrad = true
                w.requiresGrad = true
                b.requiresGrad = true
                if withMainGrads {
                    w.grad = Tensor.zeros(w.shape)
                    b.grad = Tensor.zeros(b.shape)
                }
                let y = f(a, w, b)
                (y * y).sum().backward()
                return [y.floats(), a.grad!.floats(), w.grad!.floats(), b.grad!.floats()]
            }
            let fused = run { Functional.linear(activationOf: $0, .unary(.geluTanh), weight: $1, bias: $2) }
            let composed = run { Functional.linear(Functional.gelu($0), weight: $1, bias: $2) }
            for (i, name) in ["output", "dx", "dW", "db"].enumerated() {
                XCTAssertEqual(fused[i], composed[i], "\(name), main grads \(withMainGrads)")
            }
        }
    }
}
