import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// `Ops.accumulateLinearWeightGradient`: the wgrad GEMM adding into an fp32 main grad. The CPU against
/// the unfused product, and the GPU (cuBLASLt, C = D = main grad, beta 1, BGRADB) against the CPU.
final class LinearGradientAccumulationTests: XCTestCase {
    /// main += gᵀ x and Σ g over [2, 37] tokens, on the CPU: the same as computing the fp32 product and adding.
    func testCPUAccumulatesTheProductIntoTheMainGrad() {
        for dtype in [DType.float32, .bfloat16] {
            let g = randomTensor([2, 37, 19], dtype: dtype, seed: 1), x = randomTensor([2, 37, 23], dtype: dtype, seed: 2)
            let initial = randomTensor([19, 23], seed: 3)
            let main = Tensor.zeros([19, 23])
            Ops.copy(initial, into: main)
            let bias = Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: main, withBias: true)
            let (gf, xf) = (g.cast(to: .float32).reshaped([-1, 19]), x.cast(to: .float32).reshaped([-1, 23]))
            let expected = Ops.binary(initial, Ops.matmul(gf.transposed(0, 1), xf), .add)
            assertParity(main, expected, "main grad \(dtype)", tolerance: (1e-5, 1e-5))
            assertParity(bias!, Ops.reduce(gf, dims: [0], .sum), "bias gradient \(dtype)", tolerance: (1e-5, 1e-5))
            XCTAssertNil(Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: main, withBias: false))
        }
    }

    /// The fused GEMM on the GPU against the CPU for each GEMM dtype, with and without the bias
    /// gradient, into a main grad that is a view at an offset of a flat buffer (DDP's grad buffer).
    func testGPUFusedWeightGradientMatchesCPU() throws {
        let gpu = try requireGPU()
        for dtype in [DType.bfloat16, .float16, .float32] {
            let g = randomTensor([2, 37, 19], dtype: dtype, seed: 4), x = randomTensor([2, 37, 24], dtype: dtype, seed: 5)
            let initial = randomTensor([19 * 24], seed: 6)
            for withBias in [true, false] {
                let flatCPU = Tensor.zeros([8 + 19 * 24]), flatGPU = Tensor.zeros([8 + 19 * 24], device: gpu)
                let viewCPU = flatCPU.narrowed(0, start: 8, length: 19 * 24), viewGPU = flatGPU.narrowed(0, start: 8, length: 19 * 24)
                Ops.copy(initial, into: viewCPU)
                Ops.copy(initial, into: viewGPU)
                let biasGPU = Ops.accumulateLinearWeightGradient(gradOutput: g.to(gpu), input: x.to(gpu),
                                                                 into: viewGPU.reshaped([19, 24]), withBias: withBias)
                let biasCPU = Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: viewCPU.reshaped([19, 24]),
                                                                 withBias: withBias)
                let label = "\(dtype)\(withBias ? " with bias" : "")"
                assertParity(flatGPU, flatCPU, "main grad \(label)", tolerance: (1e-4, 1e-4))
                XCTAssertEqual(biasGPU == nil, !withBias)
                if let biasGPU {
                    assertParity(biasGPU, biasCPU!, "bias gradient \(label)", tolerance: (1e-4, 1e-4))
                }
            }
        }
    }

    /// Operands the fused GEMM does not take (mixed dtypes) still accumulate, through the unfused product.
    func testGPUMixedDtypesFallBack() throws {
        let gpu = try requireGPU()
        let g = randomTensor([37, 19], dtype: .bfloat16, seed: 7), x = randomTensor([37, 24], seed: 8)
        let mainGPU = Tensor.zeros([19, 24], device: gpu), mainCPU = Tensor.zeros([19, 24])
        let biasGPU = Ops.accumulateLinearWeightGradient(gradOutput: g.to(gpu), input: x.to(gpu), into: mainGPU, withBias: true)
        let biasCPU = Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: mainCPU, withBias: true)
        assertParity(mainGPU, mainCPU, "main grad", tolerance: (1e-4, 1e-4))
        assertParity(biasGPU!, biasCPU!, "bias gradient", tolerance: (1e-2, 1e-2))
    }
}
