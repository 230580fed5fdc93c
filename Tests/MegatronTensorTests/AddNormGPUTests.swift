import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// The fused residual add + norm (`Ops.addLayerNorm`, `addRMSNorm` and their backwards) on `.cuda(0)`
/// against the CPU's unfused add then norm, for each storage type, on GPT-2's width (a warp per
/// row), a wide row and an odd width (the element-by-element path). Skipped without a GPU.
final class AddNormGPUTests: XCTestCase {
    func testAddNormForwardAndBackwardMatchTheCPU() throws {
        let gpu = try requireGPU()
        for (dtype, shape, label, tol) in cases([DType.float32, .bfloat16, .float16], [[4, 33, 768], [5, 4096], [7, 100]]) {
            let (x, r, g, gs, w, b) = operands(shape, dtype, seed: 41)

            let ln = Ops.addLayerNorm(x, residual: r, weight: w, bias: b, epsilon: 1e-5)
            let lnGPU = Ops.addLayerNorm(x.to(gpu), residual: r.to(gpu), weight: w.to(gpu), bias: b.to(gpu), epsilon: 1e-5)
            // The sum is one rounding of an fp32 add on both sides: exact.
            assertParity(lnGPU.sum, ln.sum, "addLayerNorm sum \(label)", tolerance: (0, 0))
            assertParity(lnGPU.output, ln.output, "addLayerNorm \(label)", tolerance: tol)
            assertParity(lnGPU.rstd, ln.rstd, "addLayerNorm rstd \(label)", tolerance: (1e-4, 1e-4))
            let back = Ops.addLayerNormBackward(g, gradSum: gs, sum: ln.sum, mean: ln.mean, rstd: ln.rstd, weight: w)
            let backGPU = Ops.addLayerNormBackward(g.to(gpu), gradSum: gs.to(gpu), sum: lnGPU.sum, mean: lnGPU.mean,
                                                   rstd: lnGPU.rstd, weight: w.to(gpu))
            assertParity(backGPU.gradInput, back.gradInput, "addLayerNorm backward input \(label)", tolerance: tol)
            assertParity(backGPU.gradWeight, back.gradWeight, "addLayerNorm backward weight \(label)", tolerance: tol)
            assertParity(backGPU.gradBias, back.gradBias, "addLayerNorm backward bias \(label)", tolerance: tol)

            let rms = Ops.addRMSNorm(x, residual: r, weight: w, epsilon: 1e-5)
            let rmsGPU = Ops.addRMSNorm(x.to(gpu), residual: r.to(gpu), weight: w.to(gpu), epsilon: 1e-5)
            assertParity(rmsGPU.sum, rms.sum, "addRMSNorm sum \(label)", tolerance: (0, 0))
            assertParity(rmsGPU.output, rms.output, "addRMSNorm \(label)", tolerance: tol)
            let rmsBack = Ops.addRMSNormBackward(g, gradSum: gs, sum: rms.sum, rstd: rms.rstd, weight: w)
            let rmsBackGPU = Ops.addRMSNormBackward(g.to(gpu), gradSum: gs.to(gpu), sum: rmsGPU.sum, rstd: rmsGPU.rstd,
                                                    weight: w.to(gpu))
            assertParity(rmsBackGPU.gradInput, rmsBack.gradInput, "addRMSNorm backward input \(label)", tolerance: tol)
            assertParity(rmsBackGPU.gradWeight, rmsBack.gradWeight, "addRMSNorm backward weight \(label)", tolerance: tol)
        }
    }

    /// Operands the fused kernel does not take (a bf16 residual on an fp32 stream) fall back to the
    /// add then the norm, on the GPU, with the add's type promotion.
    func testMixedTypesFallBackToTheUnfusedOps() throws {
        let gpu = try requireGPU()
        let x = randomTensor([3, 64], seed: 47), r = randomTensor([3, 64], dtype: .bfloat16, seed: 48)
        let w = randomTensor([64], seed: 49, shift: 1)
        let cpu = Ops.addRMSNorm(x, residual: r, weight: w, epsilon: 1e-5)
        let onGPU = Ops.addRMSNorm(x.to(gpu), residual: r.to(gpu), weight: w.to(gpu), epsilon: 1e-5)
        XCTAssertEqual(onGPU.sum.device, gpu)
        assertParity(onGPU.sum, cpu.sum, "mixed-type sum", tolerance: (0, 0))
        assertParity(onGPU.output, cpu.output, "mixed-type rms norm", tolerance: (1e-4, 1e-4))
    }

    /// With the residual's dropout fused in (`residualDropout`): the same mask as `Ops.dropout` on the
    /// CPU, so the sum is bit for bit the CPU's dropout then add; rows whose flat index starts a Philox
    /// block (width % 4 == 0) and ones that do not (width 101).
    func testResidualDropoutIsOpsDropoutThenTheAdd() throws {
        let gpu = try requireGPU()
        for dtype in [DType.bfloat16, .float16, .float32] {
            for shape in [[4, 33, 768], [5, 4096], [7, 101]] {
                let width = shape.last!, label = "\(dtype) \(shape)"
                let x = randomTensor(shape, dtype: dtype, seed: 51), r = randomTensor(shape, dtype: dtype, seed: 52)
                let w = randomTensor([width], dtype: dtype, seed: 53, shift: 1), b = randomTensor([width], dtype: dtype, seed: 54)
                let drop: Ops.ResidualDropout = (0.1, 99, 5)
                let dropped = Ops.dropout(r, p: 0.1, seed: 99, offset: 5)
                let ln = Ops.addLayerNorm(x, residual: dropped, weight: w, bias: b, epsilon: 1e-5)
                let lnGPU = Ops.addLayerNorm(x.to(gpu), residual: r.to(gpu), residualDropout: drop, weight: w.to(gpu), bias: b.to(gpu),
                                             epsilon: 1e-5)
                assertParity(lnGPU.sum, ln.sum, "addLayerNorm with dropout sum \(label)", tolerance: (0, 0))
                assertParity(lnGPU.output, ln.output, "addLayerNorm with dropout \(label)", tolerance: (2e-2, 2e-2))
                let rms = Ops.addRMSNorm(x, residual: dropped, weight: w, epsilon: 1e-5)
                let rmsGPU = Ops.addRMSNorm(x.to(gpu), residual: r.to(gpu), residualDropout: drop, weight: w.to(gpu), epsilon: 1e-5)
                assertParity(rmsGPU.sum, rms.sum, "addRMSNorm with dropout sum \(label)", tolerance: (0, 0))
                XCTAssertNotEqual(rmsGPU.sum.floats(), Ops.addRMSNorm(x, residual: r, weight: w, epsilon: 1e-5).sum.floats(),
                                  "something was dropped")
            }
        }
    }

    /// The backward with the residual's dropout fused in (the add_dropout_ backward kernels): the
    /// residual's gradient is bit for bit the CPU's `Ops.dropout` of the GPU's own input gradient, which
    /// is bit for bit the input gradient without dropout; both match the CPU's unfused backward.
    func testResidualDropoutBackwardIsOpsDropoutOfTheInputGradient() throws {
        let gpu = try requireGPU()
        for (dtype, shape, label, tol) in cases([DType.bfloat16, .float16, .float32], [[4, 33, 768], [5, 4096], [7, 101]]) {
            let (x, r, g, gs, w, b) = operands(shape, dtype, seed: 61)
            let drop: Ops.ResidualDropout = (0.1, 77, 3)
            let (xG, rG, gG, gsG, wG) = (x.to(gpu), r.to(gpu), g.to(gpu), gs.to(gpu), w.to(gpu))

            let ln = Ops.addLayerNorm(x, residual: r, residualDropout: drop, weight: w, bias: b, epsilon: 1e-5)
            let lnGPU = Ops.addLayerNorm(xG, residual: rG, residualDropout: drop, weight: wG, bias: b.to(gpu), epsilon: 1e-5)
            let back = Ops.addLayerNormBackward(g, gradSum: gs, sum: ln.sum, mean: ln.mean, rstd: ln.rstd, weight: w,
                                                residualDropout: drop)
            let fused = Ops.addLayerNormBackward(gG, gradSum: gsG, sum: lnGPU.sum, mean: lnGPU.mean, rstd: lnGPU.rstd,
                                                 weight: wG, residualDropout: drop)
            let plain = Ops.addLayerNormBackward(gG, gradSum: gsG, sum: lnGPU.sum, mean: lnGPU.mean, rstd: lnGPU.rstd, weight: wG)
            assertDroppedGradient(fused.gradInput, fused.gradResidual, plain: plain.gradInput,
                                  cpu: (back.gradInput, back.gradResidual), drop, "LN \(label)", tol)
            assertParity(fused.gradWeight, back.gradWeight, "LN weight \(label)", tolerance: tol)

            let rms = Ops.addRMSNorm(x, residual: r, residualDropout: drop, weight: w, epsilon: 1e-5)
            let rmsGPU = Ops.addRMSNorm(xG, residual: rG, residualDropout: drop, weight: wG, epsilon: 1e-5)
            let rmsBack = Ops.addRMSNormBackward(g, gradSum: gs, sum: rms.sum, rstd: rms.rstd, weight: w, residualDropout: drop)
            let rmsFused = Ops.addRMSNormBackward(gG, gradSum: gsG, sum: rmsGPU.sum, rstd: rmsGPU.rstd, weight: wG,
                                                  residualDropout: drop)
            let rmsPlain = Ops.addRMSNormBackward(gG, gradSum: gsG, sum: rmsGPU.sum, rstd: rmsGPU.rstd, weight: wG)
            assertDroppedGradient(rmsFused.gradInput, rmsFused.gradResidual, plain: rmsPlain.gradInput,
                                  cpu: (rmsBack.gradInput, rmsBack.gradResidual), drop, "RMS \(label)", tol)
        }
    }

    /// x, residual, output gradient, sum gradient, weight (around 1) and bias of one case, seeds `seed` on.
    private func operands(_ shape: [Int], _ dtype: DType, seed: UInt64)
        -> (x: Tensor, r: Tensor, g: Tensor, gs: Tensor, w: Tensor, b: Tensor) {
        let rows = (0..<4).map { randomTensor(shape, dtype: dtype, seed: seed + UInt64($0)) }
        return (rows[0], rows[1], rows[2], rows[3], randomTensor([shape.last!], dtype: dtype, seed: seed + 4, shift: 1),
                randomTensor([shape.last!], dtype: dtype, seed: seed + 5))
    }

    /// Each storage type with each shape, its label and the fused kernels' bounds against the CPU for
    /// that type (fp32 statistics, one rounding to the type).
    private func cases(_ dtypes: [DType], _ shapes: [[Int]]) -> [(DType, [Int], String, (Float, Float))] {
        dtypes.flatMap { dtype in
            shapes.map { (dtype, $0, "\(dtype) \($0)", dtype == .float32 ? (1e-4, 1e-4) : (dtype == .bfloat16 ? (2e-2, 2e-2) : (4e-3, 4e-3))) }
        }
    }

    private func assertDroppedGradient(_ gradInput: Tensor, _ gradResidual: Tensor, plain: Tensor,
                                       cpu: (gradInput: Tensor, gradResidual: Tensor), _ drop: Ops.ResidualDropout,
                                       _ label: String, _ tol: (Float, Float)) {
        assertParity(gradInput, plain, "\(label): input gradient as without dropout", tolerance: (0, 0))
        let expected = Ops.dropout(gradInput.to(.cpu), p: drop.p, seed: drop.seed, offset: drop.offset)
        assertParity(gradResidual, expected, "\(label): residual gradient is dropout of the input gradient", tolerance: (0, 0))
        assertParity(gradResidual, cpu.gradResidual, "\(label): residual gradient against the CPU", tolerance: tol)
        XCTAssertNotEqual(gradResidual.floats(), gradInput.floats(), "\(label): something was dropped")
    }
}
