import XCTest
import MegatronTensor
@testable import MegatronAutograd
import MegatronTestSupport

/// Gradient-accumulation fusion: a linear layer whose weight already has an fp32 `.grad` (a main grad)
/// adds its weight gradient into it straight from the GEMM. The results must equal the unfused path
/// (a weight gradient in the parameter's dtype, then accumulated), up to the 16-bit rounding it skips.
final class GradientAccumulationFusionTests: XCTestCase {
    let (tokens, inFeatures, outFeatures) = (6, 5, 4)

    /// A parameter of `dtype`, optionally with a zeroed fp32 main grad as the optimizer's `zeroGrad` sets.
    func parameter(_ shape: [Int], dtype: DType, seed: UInt64, mainGrad: Bool) -> Tensor {
        var p = sample(shape, seed: seed).cast(to: dtype)
        p.requiresGrad = true
        if mainGrad { p.grad = Tensor.zeros(shape) }
        return p
    }

    /// Micro-batches of input and upstream gradient, `[2, 3, in]` and `[2, 3, out]`, in `dtype`.
    func microBatches(_ dtype: DType) -> [(x: Tensor, g: Tensor)] {
        (0..<2).map { i in
            (sample([2, 3, inFeatures], seed: 10 + UInt64(i)).cast(to: dtype),
             sample([2, 3, outFeatures], seed: 20 + UInt64(i)).cast(to: dtype))
        }
    }

    /// Σ over micro-batches of gᵀ x and Σ g, computed in fp32 from the (rounded) operands.
    func exactSums(_ batches: [(x: Tensor, g: Tensor)]) -> (weight: [Float], bias: [Float]) {
        var weight = [Float](repeating: 0, count: outFeatures * inFeatures), bias = [Float](repeating: 0, count: outFeatures)
        for (x, g) in batches {
            let xs = x.floats(), gs = g.floats()
            for t in 0..<tokens {
                for o in 0..<outFeatures {
                    bias[o] += gs[t * outFeatures + o]
                    for i in 0..<inFeatures { weight[o * inFeatures + i] += gs[t * outFeatures + o] * xs[t * inFeatures + i] }
                }
            }
        }
        return (weight, bias)
    }

    /// Runs `linear` forward and backward over the micro-batches; returns the weight's and bias's grads.
    func run(_ w: Tensor, _ b: Tensor, _ batches: [(x: Tensor, g: Tensor)], retainGraph: Bool = false) -> (Tensor, Tensor) {
        for (x, g) in batches {
            Functional.linear(x, weight: w, bias: b).backward(gradient: g, retainGraph: retainGraph)
        }
        return (w.grad!, b.grad!)
    }

    func testFP32ParametersFusedEqualUnfused() {
        let batches = microBatches(.float32)
        let fused = run(parameter([outFeatures, inFeatures], dtype: .float32, seed: 1, mainGrad: true),
                        parameter([outFeatures], dtype: .float32, seed: 2, mainGrad: true), batches)
        // Without a main grad the first pass makes `.grad` and the second adds to it: the unfused path.
        let unfused = run(parameter([outFeatures, inFeatures], dtype: .float32, seed: 1, mainGrad: false),
                          parameter([outFeatures], dtype: .float32, seed: 2, mainGrad: false), batches, retainGraph: true)
        XCTAssertEqual(fused.0.dtype, .float32)
        assertClose(fused.0.floats(), unfused.0.floats(), absolute: 1e-6, "weight gradient")
        assertClose(fused.1.floats(), unfused.1.floats(), absolute: 1e-6, "bias gradient")
        let exact = exactSums(batches)
        assertClose(fused.0.floats(), exact.weight, absolute: 1e-5, "weight gradient against the spelled-out sum")
        assertClose(fused.1.floats(), exact.bias, absolute: 1e-5, "bias gradient against the spelled-out sum")
    }

    /// bf16 parameters with fp32 main grads: the fused GEMM accumulates the exact fp32 product, where the
    /// unfused path first rounds each micro-batch's gradient to bf16.
    func testBF16ParametersAccumulateInFP32AcrossMicroBatches() {
        let batches = microBatches(.bfloat16)
        let w = parameter([outFeatures, inFeatures], dtype: .bfloat16, seed: 1, mainGrad: true)
        let b = parameter([outFeatures], dtype: .bfloat16, seed: 2, mainGrad: true)
        let mainGrads = (w.grad!, b.grad!)
        let fused = run(w, b, batches)
        XCTAssertEqual(fused.0.storage === mainGrads.0.storage, true, "the weight's main grad buffer is kept")
        XCTAssertEqual(fused.1.storage === mainGrads.1.storage, true, "the bias's main grad buffer is kept")
        let exact = exactSums(batches)
        assertClose(fused.0.floats(), exact.weight, absolute: 1e-5, "fused weight gradient is the fp32 sum")
        assertClose(fused.1.floats(), exact.bias, absolute: 1e-5, "fused bias gradient is the fp32 sum")

        // The unfused path (kept under retainGraph) rounds each contribution to bf16 before accumulating.
        let w2 = parameter([outFeatures, inFeatures], dtype: .bfloat16, seed: 1, mainGrad: true)
        let b2 = parameter([outFeatures], dtype: .bfloat16, seed: 2, mainGrad: true)
        let unfused = run(w2, b2, batches, retainGraph: true)
        var rounded = [Float](repeating: 0, count: outFeatures * inFeatures)
        for (x, g) in batches {
            let contribution = Ops.linearParameterGradients(gradOutput: g, input: x, withBias: false).weight
            XCTAssertEqual(contribution.dtype, .bfloat16)
            rounded = zip(rounded, contribution.floats()).map(+)
        }
        XCTAssertEqual(unfused.0.floats(), rounded, "unfused: bf16 gradients added into fp32")
        assertClose(unfused.0.floats(), fused.0.floats(), absolute: 0.1, "both paths agree to bf16 rounding")
        XCTAssertGreaterThan(zip(unfused.0.floats(), exact.weight).map { abs($0 - $1) }.max()!, 1e-4,
                             "the operands are chosen so that bf16 rounding is visible (the test tells the paths apart)")
    }

    /// A weight used twice in one pass (tied, as GPT's embedding and output layer) takes both contributions
    /// into its main grad in place, or one in place and one as a tensor added at the end: every mix sums
    /// to the unfused result up to the bf16 rounding fusion skips, and DDP's ready hook fires once.
    func testTiedWeightUsedTwiceAccumulatesEveryUse() {
        func run(mainGrad: Bool, secondUseFused: Bool) -> (grad: [Float], hookCalls: Int) {
            let w = parameter([inFeatures, inFeatures], dtype: .bfloat16, seed: 3, mainGrad: mainGrad)
            var calls = 0
            w.onGradReady { _ in calls += 1 }
            let x = sample([2, 3, inFeatures], seed: 4).cast(to: .bfloat16)
            let first = Functional.linear(x, weight: w, bias: nil)
            // A plain matmul returns its weight gradient as a tensor: the unfused kind of contribution.
            let h = secondUseFused ? Functional.linear(first, weight: w, bias: nil) : first.matmul(w.transposed(0, 1))
            h.backward(gradient: sample([2, 3, inFeatures], seed: 5).cast(to: .bfloat16))
            return (w.grad!.floats(), calls)
        }
        for secondUseFused in [true, false] {
            let fused = run(mainGrad: true, secondUseFused: secondUseFused)
            let unfused = run(mainGrad: false, secondUseFused: secondUseFused)
            assertClose(fused.grad, unfused.grad, absolute: 0.1, "tied weight, second use fused: \(secondUseFused)")
            XCTAssertEqual(fused.hookCalls, 1, "one ready call per pass")
            XCTAssertEqual(unfused.hookCalls, 1, "one ready call per pass")
        }
    }

    /// DDP's overlapped reduction hangs off `onGradReady`: it must fire once per pass, after the in-place
    /// accumulation, with the main grad itself.
    func testGradReadyHookFiresOnceWithTheMainGrad() {
        let w = parameter([outFeatures, inFeatures], dtype: .bfloat16, seed: 1, mainGrad: true)
        let b = parameter([outFeatures], dtype: .bfloat16, seed: 2, mainGrad: true)
        let mainGrad = w.grad!
        var seen: [[Float]] = []
        w.onGradReady { grad in
            XCTAssertTrue(grad.storage === mainGrad.storage)
            seen.append(grad.floats())
        }
        let batches = microBatches(.bfloat16)
        _ = run(w, b, batches)
        XCTAssertEqual(seen.count, 2, "one call per backward pass")
        XCTAssertEqual(seen.last!, mainGrad.floats())
        XCTAssertNotEqual(seen[0], seen[1])
    }

    /// A main grad that is a view into a larger buffer (DDP's contiguous grad buffer) is written in place,
    /// and nothing outside the view changes.
    func testMainGradViewIntoAFlatBuffer() {
        let flat = Tensor.full([7 + outFeatures * inFeatures + 3], 0.5)
        var w = sample([outFeatures, inFeatures], seed: 1).cast(to: .bfloat16)
        w.requiresGrad = true
        w.grad = flat.narrowed(0, start: 7, length: outFeatures * inFeatures).reshaped([outFeatures, inFeatures])
        let (x, g) = microBatches(.bfloat16)[0]
        Functional.linear(x, weight: w, bias: nil).backward(gradient: g)
        let values = flat.floats()
        XCTAssertEqual(Array(values[..<7]) + Array(values[(7 + outFeatures * inFeatures)...]), [Float](repeating: 0.5, count: 10))
        assertClose(Array(values[7..<(7 + outFeatures * inFeatures)]), exactSums([(x, g)]).weight.map { $0 + 0.5 },
                    absolute: 1e-5, "weight gradient added into the view")
    }

    /// The fused path on the GPU (cuBLASLt accumulating into the fp32 main grads, bias from BGRADB) against
    /// the CPU, over two micro-batches of a bf16 linear layer.
    func testGPUFusedLinearMatchesCPU() throws {
        try requireGPU("GPU gradient-accumulation fusion test")
        let batches = microBatches(.bfloat16)
        func grads(on device: Device) -> ([Float], [Float]) {
            var w = sample([outFeatures, inFeatures], seed: 1).cast(to: .bfloat16).to(device)
            var b = sample([outFeatures], seed: 2).cast(to: .bfloat16).to(device)
            (w.requiresGrad, b.requiresGrad) = (true, true)
            (w.grad, b.grad) = (Tensor.zeros(w.shape, device: device), Tensor.zeros(b.shape, device: device))
            let (gw, gb) = run(w, b, batches.map { ($0.x.to(device), $0.g.to(device)) })
            XCTAssertEqual(gw.device, device)
            return (gw.floats(), gb.floats())
        }
        let (gpu, cpu) = (grads(on: .cuda(0)), grads(on: .cpu))
        let exact = exactSums(batches)
        assertClose(gpu.0, cpu.0, absolute: 1e-4, "weight gradient")
        assertClose(gpu.0, exact.weight, absolute: 1e-4, "GPU weight gradient is the fp32 sum")
        assertClose(gpu.1, cpu.1, absolute: 1e-4, "bias gradient")
    }
}
