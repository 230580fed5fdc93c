import XCTest
import MegatronTensor
@testable import MegatronAutograd

/// The fused residual add + norm (`Functional.addLayerNorm` / `addRMSNorm`): finite-difference
/// gradients, and the same bits as the unfused `x + residual` followed by the norm.
final class AddNormGradientTests: XCTestCase {
    let x = sample([3, 5], seed: 31), residual = sample([3, 5], seed: 32)
    let w = sample([5], seed: 33), b = sample([5], seed: 34)

    func testFiniteDifferenceGradientsThroughBothOutputs() {
        // The sum carries on as the residual stream and the normed value feeds the branch: both get gradients.
        checkGradients([x, residual, w, b]) {
            let r = Functional.addLayerNorm($0[0], residual: $0[1], weight: $0[2], bias: $0[3])
            return r.normed + r.sum * 0.5
        }
        checkGradients([x, residual, w]) {
            let r = Functional.addRMSNorm($0[0], residual: $0[1], weight: $0[2])
            return r.normed + r.sum * 0.5
        }
        // Only the normed output used (a block's final norm): the sum's gradient is zero.
        checkGradients([x, residual]) { Functional.addLayerNorm($0[0], residual: $0[1], weight: nil, bias: nil).normed }
        checkGradients([x, residual]) { Functional.addRMSNorm($0[0], residual: $0[1], weight: nil).normed }
    }

    func testLayerNormMatchesTheUnfusedAddThenNormBitForBit() {
        compareWithUnfused(parameters: [w, b],
                           fused: { Functional.addLayerNorm($0, residual: $1, weight: $2[0], bias: $2[1]) },
                           unfused: { Functional.layerNorm($0, weight: $1[0], bias: $1[1]) })
    }

    func testRMSNormMatchesTheUnfusedAddThenNormBitForBit() {
        compareWithUnfused(parameters: [w],
                           fused: { Functional.addRMSNorm($0, residual: $1, weight: $2[0]) },
                           unfused: { Functional.rmsNorm($0, weight: $1[0]) })
    }

    /// The residual's dropout fused into the add (`residualDropout`) against `Functional.dropout` then the
    /// fused add: the same draw of the same generator, so the same outputs and gradients bit for bit.
    func testResidualDropoutMatchesDropoutThenTheAdd() {
        compareWithUnfused(parameters: [w, b],
                           fused: { Functional.addLayerNorm($0, residual: $1, weight: $2[0], bias: $2[1],
                                                            residualDropout: (0.4, PhiloxGenerator(seed: 7, offset: 2))) },
                           unfused: { Functional.layerNorm($0, weight: $1[0], bias: $1[1]) },
                           dropout: (0.4, PhiloxGenerator(seed: 7, offset: 2)))
        compareWithUnfused(parameters: [w],
                           fused: { Functional.addRMSNorm($0, residual: $1, weight: $2[0],
                                                          residualDropout: (0.4, PhiloxGenerator(seed: 7, offset: 3))) },
                           unfused: { Functional.rmsNorm($0, weight: $1[0]) }, dropout: (0.4, PhiloxGenerator(seed: 7, offset: 3)))
        checkGradients([x, residual, w, b]) {
            let r = Functional.addLayerNorm($0[0], residual: $0[1], weight: $0[2], bias: $0[3],
                                            residualDropout: (0.3, PhiloxGenerator(seed: 8)))
            return r.normed + r.sum * 0.5
        }
    }

    /// Runs `out = sum * c + f(normed)` both ways, as a pre-norm layer does (the sum goes on, the
    /// normed value feeds a branch), and compares the outputs and every gradient bit for bit.
    /// With `dropout`, the unfused way drops the residual with `Functional.dropout` before the add.
    private func compareWithUnfused(parameters: [Tensor], fused: (Tensor, Tensor, [Tensor]) -> (sum: Tensor, normed: Tensor),
                                    unfused: (Tensor, [Tensor]) -> Tensor, dropout: (Float, PhiloxGenerator)? = nil,
                                    file: StaticString = #filePath, line: UInt = #line) {
        let c = sample([3, 5], seed: 35), g = sample([3, 5], seed: 36)
        func run(_ isFused: Bool) -> (out: [Float], grads: [[Float]]) {
            let leaves = ([x, residual] + parameters).map { t -> Tensor in
                var leaf = t.detached()
                leaf.requiresGrad = true
                return leaf
            }
            let (sum, normed): (Tensor, Tensor)
            if isFused {
                (sum, normed) = fused(leaves[0], leaves[1], Array(leaves[2...]))
            } else {
                sum = leaves[0] + (dropout.map { Functional.dropout(leaves[1], p: $0.0, generator: $0.1) } ?? leaves[1])
                normed = unfused(sum, Array(leaves[2...]))
            }
            let out = sum * c + (normed * normed).apply(.tanh)
            out.backward(gradient: g)
            return (out.floats(), leaves.map { $0.grad!.floats() })
        }
        let (a, b) = (run(true), run(false))
        XCTAssertEqual(a.out, b.out, "outputs", file: file, line: line)
        for (i, (ga, gb)) in zip(a.grads, b.grads).enumerated() {
            XCTAssertEqual(ga, gb, "gradient of input \(i)", file: file, line: line)
        }
    }
}
