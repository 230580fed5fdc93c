import XCTest
import MegatronTensor
@testable import MegatronAutograd

/// Compares autograd gradients with central finite differences of `sum(f(inputs) * w)` for a fixed random `w`.
func checkGradients(_ inputs: [Tensor], tolerance: Float = 1e-2, epsilon: Float = 1e-2,
                    file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    let leaves = inputs.map { t -> Tensor in
        var leaf = t.madeContiguous().detached()
        leaf.requiresGrad = true
        return leaf
    }
    let probe = f(leaves)
    let weights = Tensor.normal(probe.shape, generator: PhiloxGenerator(seed: 99))
    (probe * weights).sum().backward()

    func objective(_ values: [Tensor]) -> Float {
        withoutGrad { (f(values) * weights).sum().item() }
    }
    for (i, leaf) in leaves.enumerated() {
        guard let analytic = leaf.grad?.floats() else {
            XCTFail("input \(i) received no gradient", file: file, line: line)
            continue
        }
        let base = leaf.floats()
        for j in 0..<base.count {
            func shifted(_ delta: Float) -> Float {
                var values = base
                values[j] += delta
                var args = leaves.map { $0.detached() }
                args[i] = Tensor(shape: leaf.shape, values: values, dtype: leaf.dtype)
                return objective(args)
            }
            let numeric = (shifted(epsilon) - shifted(-epsilon)) / (2 * epsilon)
            let scale = max(1, abs(numeric), abs(analytic[j]))
            XCTAssertEqual(analytic[j], numeric, accuracy: tolerance * scale,
                           "d/d input\(i)[\(j)]", file: file, line: line)
        }
    }
}

/// A reproducible tensor whose values stay away from zero (kinks of abs / relu / max sit there).
func sample(_ shape: [Int], seed: UInt64, low: Float = -2, high: Float = 2) -> Tensor {
    let values = Tensor.uniform(shape, low: low, high: high, generator: PhiloxGenerator(seed: seed)).floats()
    return Tensor(shape: shape, values: values.map { abs($0) < 0.1 ? $0 + 0.3 : $0 })
}
