import XCTest
import MegatronCUDA
@testable import MegatronTensor
import MegatronTestSupport

/// The general device paths a GPU op takes where its fused kernel does not apply (rows wider than the
/// norm kernels hold, fp32 or odd-shaped attention, dtypes a kernel lacks): composed of device ops, so
/// nothing goes through the host. Their arithmetic runs here on the CPU against the CPU kernels; the GPU
/// tests check the same ops on a device with its host copies counted.
final class GeneralDevicePathTests: XCTestCase {
    let wide = CUDAKernels.normMaxColumns + 64

    /// The fused norms take rows up to `normMaxColumns` wide in one dtype; wider rows and mixed dtypes go
    /// to `ComposedNorms`.
    func testNormDispatchSendsWideRowsAndMixedDtypesToTheGeneralPath() {
        let widest = Tensor(zeros: [2, CUDAKernels.normMaxColumns], dtype: .bfloat16)
        let tooWide = Tensor(zeros: [2, wide], dtype: .bfloat16)
        XCTAssertNotNil(CUDAFusedOps.normShape(widest, rowsLike: [], parameters: [Tensor(zeros: [widest.shape[1]], dtype: .bfloat16)]))
        XCTAssertNil(CUDAFusedOps.normShape(tooWide, rowsLike: [], parameters: [Tensor(zeros: [wide], dtype: .bfloat16)]))
        XCTAssertNil(CUDAFusedOps.normShape(widest, rowsLike: [], parameters: [Tensor(zeros: [widest.shape[1]])]), "fp32 weight")
    }

    func testComposedNormsMatchTheCPUKernelsOnWideRows() {
        for dtype in [DType.float32, .bfloat16] {
            let x = randomTensor([3, wide], dtype: dtype, seed: 1, shift: 2), g = randomTensor([3, wide], dtype: dtype, seed: 2)
            let w = randomTensor([wide], dtype: dtype, seed: 3, shift: 1), b = randomTensor([wide], dtype: dtype, seed: 4)
            let tolerance: (Float, Float) = dtype == .float32 ? (1e-4, 1e-4) : (1e-2, 1e-2)
            let ln = Ops.layerNorm(x, weight: w, bias: b, epsilon: 1e-5)
            let composed = ComposedNorms.forward(x, weight: w, bias: b, epsilon: 1e-5, centered: true)
            assertParity(composed.output, ln.output, "layer norm \(dtype)", tolerance: tolerance)
            assertParity(composed.mean!, ln.mean, "layer norm mean \(dtype)", tolerance: (1e-5, 1e-5))
            assertParity(composed.rstd, ln.rstd, "layer norm rstd \(dtype)", tolerance: (1e-4, 1e-5))
            let back = Ops.layerNormBackward(g, x: x, mean: ln.mean, rstd: ln.rstd, weight: w)
            let composedBack = ComposedNorms.backward(g, x: x, mean: ln.mean, rstd: ln.rstd, weight: w)
            assertParity(composedBack.gradInput, back.gradInput, "layer norm dx \(dtype)", tolerance: tolerance)
            assertParity(composedBack.gradWeight, back.gradWeight, "layer norm dw \(dtype)", tolerance: tolerance)
            assertParity(composedBack.gradBias, back.gradBias, "layer norm db \(dtype)", tolerance: tolerance)

            let rms = Ops.rmsNorm(x, weight: nil, epsilon: 1e-6)
            let composedRMS = ComposedNorms.forward(x, weight: nil, bias: nil, epsilon: 1e-6, centered: false)
            XCTAssertNil(composedRMS.mean)
            assertParity(composedRMS.output, rms.output, "RMS norm \(dtype)", tolerance: tolerance)
            assertParity(composedRMS.rstd, rms.rstd, "RMS norm rstd \(dtype)", tolerance: (1e-4, 1e-5))
            let rmsBack = Ops.rmsNormBackward(g, x: x, rstd: rms.rstd, weight: w)
            let composedRMSBack = ComposedNorms.backward(g, x: x, mean: nil, rstd: rms.rstd, weight: w)
            assertParity(composedRMSBack.gradInput, rmsBack.gradInput, "RMS norm dx \(dtype)", tolerance: tolerance)
            assertParity(composedRMSBack.gradWeight, rmsBack.gradWeight, "RMS norm dw \(dtype)", tolerance: tolerance)
        }
    }

    /// Grouped queries with fewer queries than keys (a KV cache's offset), causal with a window and sinks,
    /// and dropout drawn from Philox or given: output, log-sum-exp and the three gradients.
    func testComposedAttentionMatchesTheReference() {
        let (b, heads, groups, s, t, d) = (2, 4, 2, 5, 7, 6)
        let q = randomTensor([b, heads, s, d], seed: 10), k = randomTensor([b, groups, t, d], seed: 11)
        let v = randomTensor([b, groups, t, d], seed: 12), dO = randomTensor([b, heads, s, d], seed: 13)
        let sinks = randomTensor([heads], seed: 14)
        let given = (0..<(b * heads * s * t)).map { $0 % 3 != 1 }
        let cases: [(String, Bool, AttentionDropout?, AttentionMasking)] = [
            ("full", false, nil, .none),
            ("causal", true, nil, .none),
            ("window and sinks", true, nil, AttentionMasking(window: 2, sinks: sinks)),
            ("Philox dropout", true, AttentionDropout(probability: 0.25, seed: 3, offset: 8), .none),
            ("given dropout", false, AttentionDropout(probability: 0.5, keeping: given), .none),
        ]
        for (name, causal, dropout, masking) in cases {
            let layout = AttentionLayout(q: q, k: k, v: v)
            let general = ComposedAttention(layout: layout, causal: causal, scale: 0.4, dropout: dropout, masking: masking)
            let reference = Ops.attention(q: q, k: k, v: v, causal: causal, scale: 0.4, dropout: dropout, masking: masking)
            let found = general.forward(q: q, k: k, v: v)
            assertClose(found.output, reference.output, relative: 1e-4, absolute: 1e-5, "\(name) output")
            XCTAssertEqual(found.output.strides, reference.output.strides, "\(name): output laid out as [b, s, heads, d]")
            assertClose(found.logSumExp, reference.logSumExp, relative: 1e-5, absolute: 1e-5, "\(name) log-sum-exp")
            let grads = Ops.attentionBackward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                              logSumExp: reference.logSumExp, causal: causal, scale: 0.4, dropout: dropout,
                                              masking: masking)
            let foundGrads = general.backward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                              logSumExp: reference.logSumExp)
            assertClose(foundGrads.gradQ, grads.gradQ, relative: 1e-4, absolute: 1e-5, "\(name) dq")
            assertClose(foundGrads.gradK, grads.gradK, relative: 1e-4, absolute: 1e-5, "\(name) dk")
            assertClose(foundGrads.gradV, grads.gradV, relative: 1e-4, absolute: 1e-5, "\(name) dv")
        }
    }

    func testHostCopyCountsSubtract() {
        let later = HostCopyCount(deviceToHost: 5, hostToDevice: 9), earlier = HostCopyCount(deviceToHost: 2, hostToDevice: 9)
        XCTAssertEqual(later - earlier, HostCopyCount(deviceToHost: 3, hostToDevice: 0))
        XCTAssertEqual(HostCopyCounter().count, HostCopyCount(deviceToHost: 0, hostToDevice: 0))
    }

    // MARK: - On a GPU

    /// Every explicit copy counts once, in its direction: `to(_:)` both ways, a read of values, a started copy.
    func testExplicitCopiesAreCounted() throws {
        let gpu = try requireGPU("host copy counter GPU test")
        let copies = try CUDAContext.shared(ordinal: 0).hostCopies
        let x = randomTensor([4, 3], seed: 20)
        let start = copies.count
        let onGPU = x.to(gpu)
        XCTAssertEqual(copies.count - start, HostCopyCount(deviceToHost: 0, hostToDevice: 1))
        _ = onGPU.to(.cpu)
        _ = onGPU.floats()
        _ = onGPU.startCopyToHost().tensor()
        XCTAssertEqual(copies.count - start, HostCopyCount(deviceToHost: 3, hostToDevice: 1))
        _ = Ops.binary(onGPU, onGPU, .mul)
        XCTAssertEqual(copies.count - start, HostCopyCount(deviceToHost: 3, hostToDevice: 1), "an op copies nothing")
    }

    /// The ops whose fused kernels do not take these operands (rows wider than the norm kernels hold, fp32
    /// attention with an odd head dim, fp8 softmax / dropout / rotary / SwiGLU, mixed dtypes) agree with the
    /// CPU without a single copy to the host while they run.
    func testGeneralPathsRunOnTheDevice() throws {
        let gpu = try requireGPU("general device path GPU test")
        let copies = try CUDAContext.shared(ordinal: 0).hostCopies
        let x = randomTensor([3, wide], dtype: .bfloat16, seed: 30, shift: 1), g = randomTensor([3, wide], dtype: .bfloat16, seed: 31)
        let w = randomTensor([wide], dtype: .bfloat16, seed: 32, shift: 1), b = randomTensor([wide], dtype: .bfloat16, seed: 33)
        let q = randomTensor([2, 4, 5, 6], seed: 34), k = randomTensor([2, 2, 7, 6], seed: 35), v = randomTensor([2, 2, 7, 6], seed: 36)
        let eight = randomTensor([4, 16], seed: 37).cast(to: .float8E4M3), half = randomTensor([4, 8], seed: 38)
        let (cos, sin) = (randomTensor([4, 16], seed: 39), randomTensor([4, 16], seed: 40))
        let mixedGrad = randomTensor([3, wide], seed: 41)
        let inputs = [x, g, w, b, q, k, v, eight, half, cos, sin, mixedGrad].map { $0.to(gpu) }
        let (xd, gd, wd, bd, qd, kd, vd, eightd) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6], inputs[7])
        let (halfd, cosd, sind, mixedGradd) = (inputs[8], inputs[9], inputs[10], inputs[11])

        let start = copies.count
        let ln = Ops.layerNorm(xd, weight: wd, bias: bd, epsilon: 1e-5)
        let lnBack = Ops.layerNormBackward(gd, x: xd, mean: ln.mean, rstd: ln.rstd, weight: wd)
        let rms = Ops.rmsNorm(xd, weight: wd, epsilon: 1e-6)
        let rmsBack = Ops.rmsNormBackward(mixedGradd, x: xd, rstd: rms.rstd, weight: wd)
        let attention = Ops.attention(q: qd, k: kd, v: vd, causal: true, scale: 0.4)
        let attentionBack = Ops.attentionBackward(gradOutput: qd, q: qd, k: kd, v: vd, output: attention.output,
                                                  logSumExp: attention.logSumExp, causal: true, scale: 0.4)
        let softmax = Ops.softmax(eightd), dropout = Ops.dropout(eightd, p: 0.25, seed: 1, offset: 4)
        let softmaxBack = Ops.softmaxBackward(eightd, gradOutput: cosd, log: false)
        let rotary = Ops.rotaryEmbedding(eightd, cos: cosd, sin: sind)
        let swiglu = Ops.swiglu(eightd), swigluBack = Ops.swigluBackward(eightd, gradOutput: halfd)
        XCTAssertEqual((copies.count - start).deviceToHost, 0, "the general paths copied to the host")

        let cpuLN = Ops.layerNorm(x, weight: w, bias: b, epsilon: 1e-5)
        assertParity(ln.output, cpuLN.output, "wide layer norm")
        let cpuLNBack = Ops.layerNormBackward(g, x: x, mean: cpuLN.mean, rstd: cpuLN.rstd, weight: w)
        assertParity(lnBack.gradInput, cpuLNBack.gradInput, "wide layer norm dx")
        assertParity(lnBack.gradWeight, cpuLNBack.gradWeight, "wide layer norm dw", tolerance: (2e-2, 5e-2))
        let cpuRMS = Ops.rmsNorm(x, weight: w, epsilon: 1e-6)
        assertParity(rms.output, cpuRMS.output, "wide RMS norm")
        let cpuRMSBack = Ops.rmsNormBackward(mixedGrad, x: x, rstd: cpuRMS.rstd, weight: w)
        assertParity(rmsBack.gradInput, cpuRMSBack.gradInput, "wide RMS norm dx, fp32 gradient", tolerance: (1e-4, 1e-4))
        let cpuAttention = Ops.attention(q: q, k: k, v: v, causal: true, scale: 0.4)
        assertParity(attention.output, cpuAttention.output, "fp32 attention", tolerance: (1e-4, 1e-5))
        let cpuAttentionBack = Ops.attentionBackward(gradOutput: q, q: q, k: k, v: v, output: cpuAttention.output,
                                                     logSumExp: cpuAttention.logSumExp, causal: true, scale: 0.4)
        assertParity(attentionBack.gradK, cpuAttentionBack.gradK, "fp32 attention dk", tolerance: (1e-4, 1e-5))
        let eightCPU = eight
        // fp8 results: one unit in the last place of E4M3 is up to 1/8 of the value (2^-9 near zero).
        let fp8Tolerance: (Float, Float) = (0.13, 2e-3)
        assertParity(softmax, Ops.softmax(eightCPU), "fp8 softmax", tolerance: fp8Tolerance)
        assertParity(softmaxBack, Ops.softmaxBackward(eightCPU, gradOutput: cos, log: false), "fp8 y, fp32 gradient softmax backward",
                     tolerance: (1e-4, 1e-4))
        assertParity(dropout, Ops.dropout(eightCPU, p: 0.25, seed: 1, offset: 4), "fp8 dropout", tolerance: fp8Tolerance)
        assertParity(rotary, Ops.rotaryEmbedding(eightCPU, cos: cos, sin: sin), "fp8 rotary", tolerance: fp8Tolerance)
        assertParity(swiglu, Ops.swiglu(eightCPU), "fp8 SwiGLU", tolerance: fp8Tolerance)
        assertParity(swigluBack, Ops.swigluBackward(eightCPU, gradOutput: half), "fp8 SwiGLU backward", tolerance: fp8Tolerance)
    }
}
