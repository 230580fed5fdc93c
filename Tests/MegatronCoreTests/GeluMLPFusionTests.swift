import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// `Functional.geluMLP` (fc1 + tanh GeLU + fc2 with the activation in cuBLASLt's GELU_AUX_BIAS and
/// DGELU epilogues on the GPU) against the plain composition `linear(gelu(linear(x)))`: outputs and the
/// gradients of x, w1, b1, w2, b2, with fresh gradients and with fp32 main grads over micro-batches.
final class GeluMLPFusionTests: XCTestCase {
    /// One MLP's operands: shared weights, and per micro-batch an input and an upstream gradient.
    struct Operands {
        var w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor
        var xs: [Tensor], gs: [Tensor]

        /// Draws scaled so that fc1's pre-activations are about N(0, 1), where GeLU bends.
        init(batch: [Int], hidden: Int, ffn: Int, dtype: DType, microBatches: Int = 1, seed: UInt64 = 1) {
            func draw(_ shape: [Int], std: Float, _ offset: UInt64) -> Tensor {
                Tensor.normal(shape, std: std, dtype: dtype, generator: PhiloxGenerator(seed: seed * 100 + offset))
            }
            w1 = draw([ffn, hidden], std: 1 / Float(hidden).squareRoot(), 1)
            b1 = draw([ffn], std: 0.5, 2)
            w2 = draw([hidden, ffn], std: 1 / Float(ffn).squareRoot(), 3)
            b2 = draw([hidden], std: 0.5, 4)
            xs = (0..<microBatches).map { draw(batch + [hidden], std: 1, 10 + UInt64($0)) }
            gs = (0..<microBatches).map { draw(batch + [hidden], std: 1, 20 + UInt64($0)) }
        }
    }

    enum Path { case fused, composed }

    /// Forward and backward over the micro-batches on `device`; returns the last output, every
    /// micro-batch's input gradient (concatenated) and the parameters' gradients, in that order.
    func run(_ path: Path, _ o: Operands, on device: Device, biases: Bool = true, mainGrads: Bool = false) -> [(String, [Float])] {
        func parameter(_ t: Tensor) -> Tensor {
            var p = t.to(device)
            p.requiresGrad = true
            if mainGrads { p.grad = Tensor.zeros(p.shape, device: device) }
            return p
        }
        let (w1, w2) = (parameter(o.w1), parameter(o.w2))
        let (b1, b2) = biases ? (parameter(o.b1), parameter(o.b2)) : (nil, nil)
        var (output, inputGradients) = ([Float](), [Float]())
        for (x, g) in zip(o.xs, o.gs) {
            var input = x.to(device)
            input.requiresGrad = true
            let y = switch path {
            case .fused: Functional.geluMLP(input, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2)
            case .composed: Functional.linear(Functional.gelu(Functional.linear(input, weight: w1, bias: b1)), weight: w2, bias: b2)
            }
            XCTAssertEqual(y.device, device)
            y.backward(gradient: g.to(device))
            (output, inputGradients) = (y.floats(), inputGradients + input.grad!.floats())
        }
        if mainGrads {
            XCTAssertEqual(w1.grad!.dtype, .float32, "w1's gradient went into its fp32 main grad")
            XCTAssertEqual(w2.grad!.dtype, .float32, "w2's gradient went into its fp32 main grad")
        }
        let parameters = [("dw1", w1), ("db1", b1), ("dw2", w2), ("db2", b2)].compactMap { name, p in p.map { (name, $0.grad!.floats()) } }
        return [("output", output), ("dx", inputGradients)] + parameters
    }

    // MARK: CPU

    /// On the CPU the primitive runs the same ops as the composition (it only records them differently,
    /// keeping `pre` instead of `h`), so every value and gradient is bit for bit the same: fp32 and bf16,
    /// with and without biases, into fresh gradients and into fp32 main grads over two micro-batches.
    func testCPUMatchesTheCompositionExactly() {
        for dtype in [DType.float32, .bfloat16] {
            for (biases, mainGrads) in [(true, false), (true, true), (false, true)] {
                let o = Operands(batch: [2, 5], hidden: 12, ffn: 24, dtype: dtype, microBatches: mainGrads ? 2 : 1)
                let fused = run(.fused, o, on: .cpu, biases: biases, mainGrads: mainGrads)
                let composed = run(.composed, o, on: .cpu, biases: biases, mainGrads: mainGrads)
                XCTAssertEqual(fused.map(\.0), composed.map(\.0))
                for ((name, a), (_, b)) in zip(fused, composed) {
                    XCTAssertEqual(a, b, "\(name), \(dtype), biases \(biases), main grads \(mainGrads)")
                }
                XCTAssertGreaterThan(fused[2].1.map(abs).max()!, 0, "gradients are not trivially zero")
            }
        }
    }

    /// The fp32 main grads after two micro-batches hold the sum of both micro-batches' gradients.
    func testCPUMainGradsSumTheMicroBatches() {
        let o = Operands(batch: [3], hidden: 8, ffn: 16, dtype: .float32, microBatches: 2)
        let accumulated = run(.fused, o, on: .cpu, mainGrads: true)
        let single = (0..<2).map { i in
            var one = o
            (one.xs, one.gs) = ([o.xs[i]], [o.gs[i]])
            return run(.fused, one, on: .cpu)
        }
        for index in 2..<accumulated.count {
            let sum = zip(single[0][index].1, single[1][index].1).map(+)
            XCTAssertEqual(accumulated[index].1.count, sum.count)
            for (a, b) in zip(accumulated[index].1, sum) { XCTAssertEqual(a, b, accuracy: 1e-5, accumulated[index].0) }
        }
    }

    /// Without grad mode the primitive just computes; where the epilogues apply is decided by device,
    /// dtype and cuBLASLt's aux row-stride rule.
    func testWithoutGradAndWhereTheEpiloguesApply() {
        let o = Operands(batch: [2], hidden: 4, ffn: 8, dtype: .float32)
        let y = withoutGrad {
            Functional.geluMLP(o.xs[0], fc1Weight: o.w1, fc1Bias: o.b1, fc2Weight: o.w2, fc2Bias: o.b2)
        }
        XCTAssertEqual(y.shape, [2, 4])
        XCTAssertFalse(Ops.geluEpilogueApplies(features: 8, dtype: .bfloat16, device: .cpu), "the CPU runs the ops unfused")
        XCTAssertFalse(Ops.geluEpilogueApplies(features: 8, dtype: .float32, device: .cuda(0)), "fp32 GEMMs take no epilogue")
        XCTAssertFalse(Ops.geluEpilogueApplies(features: 100, dtype: .bfloat16, device: .cuda(0)), "aux row stride not a multiple of 8")
        XCTAssertTrue(Ops.geluEpilogueApplies(features: 3072, dtype: .bfloat16, device: .cuda(0)))
    }

    /// The MLP module with tanh GeLU goes through `geluMLP`: same output and gradients as its two
    /// layers composed by hand (CPU, bf16 parameters).
    func testMLPModuleMatchesItsLayersComposed() throws {
        let config = try TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paramsDType: .bfloat16)
        XCTAssertEqual(config.activation, .gelu)
        let mlp = MLP(config: config, generator: PhiloxGenerator(seed: 7))
        var x = Tensor.normal([2, 3, 16], dtype: .bfloat16, generator: PhiloxGenerator(seed: 8))
        x.requiresGrad = true
        let g = Tensor.normal([2, 3, 16], dtype: .bfloat16, generator: PhiloxGenerator(seed: 9))
        func gradients(_ forward: () -> Tensor) -> [[Float]] {
            mlp.namedParameters().forEach { $0.1.grad = nil }
            x.grad = nil
            let y = forward()
            y.backward(gradient: g)
            return [y.floats(), x.grad!.floats()] + mlp.namedParameters().map { $0.1.grad!.floats() }
        }
        let module = gradients { mlp(x) }
        let (fc1, fc2) = (mlp.linearFC1, mlp.linearFC2)
        let byHand = gradients {
            let h = Functional.gelu(Functional.linear(x, weight: fc1.weight, bias: fc1.bias))
            return Functional.linear(h, weight: fc2.weight, bias: fc2.bias)
        }
        XCTAssertEqual(module.count, 6)
        XCTAssertEqual(module, byHand)
    }

    // MARK: GPU

    /// bf16 on the GPU, GEMM epilogues taken (ffn 256): the fused path against the unfused GPU path and
    /// the CPU (bf16), and all three against an fp32 CPU reference from the same bf16 operands.
    ///
    /// Tolerance: the paths round to bf16 (unit roundoff u = 2⁻⁸ ≈ 3.9e-3) at different points — the
    /// epilogue applies GeLU to the fp32 accumulator where the unfused path rounds `pre` first, and DGELU
    /// multiplies by gelu' before rounding `g · w2` — so elements differ by an ulp or two, and the relative
    /// (Frobenius) error between paths stays at a few u: 1e-2 for outputs, 2e-2 for gradients (the bound
    /// the other bf16 GPU parity tests use). The fused path must also be no less accurate than the
    /// unfused one against fp32 (within 25%).
    func testGPUFusedMatchesUnfusedAndCPUInBF16() throws {
        let gpu = try requireGPU("GeLU MLP epilogue GPU test")
        let (hidden, ffn) = (64, 256)
        XCTAssertTrue(Ops.geluEpilogueApplies(features: ffn, dtype: .bfloat16, device: gpu))
        for mainGrads in [false, true] {
            let o = Operands(batch: [2, 61], hidden: hidden, ffn: ffn, dtype: .bfloat16, microBatches: mainGrads ? 2 : 1, seed: 3)
            var exact = o
            (exact.w1, exact.b1, exact.w2, exact.b2) = (o.w1.cast(to: .float32), o.b1.cast(to: .float32),
                                                        o.w2.cast(to: .float32), o.b2.cast(to: .float32))
            (exact.xs, exact.gs) = (o.xs.map { $0.cast(to: .float32) }, o.gs.map { $0.cast(to: .float32) })
            let fused = run(.fused, o, on: gpu, mainGrads: mainGrads)
            let unfused = run(.composed, o, on: gpu, mainGrads: mainGrads)
            let cpu = run(.composed, o, on: .cpu, mainGrads: mainGrads)
            let reference = run(.composed, exact, on: .cpu, mainGrads: mainGrads)
            XCTAssertNotEqual(fused[0].1, unfused[0].1, "the epilogues ran (GeLU of the fp32 accumulator rounds differently)")
            for i in fused.indices {
                let (name, label) = (fused[i].0, "\(fused[i].0), main grads \(mainGrads)")
                let bound = name == "output" ? 1e-2 : 2e-2
                XCTAssertLessThan(relativeError(fused[i].1, unfused[i].1), bound, "fused vs unfused GPU: \(label)")
                XCTAssertLessThan(relativeError(fused[i].1, cpu[i].1), bound, "fused GPU vs CPU: \(label)")
                let (fusedError, unfusedError) = (relativeError(fused[i].1, reference[i].1), relativeError(unfused[i].1, reference[i].1))
                XCTAssertLessThan(fusedError, bound, "fused GPU vs fp32: \(label)")
                XCTAssertLessThan(fusedError, 1.25 * unfusedError + 1e-3, "fused no less accurate than unfused: \(label)")
            }
        }
    }

    /// ffn 100 is not a multiple of 8, so cuBLASLt's aux matrix cannot take it: the primitive falls back
    /// to the unfused kernels, and is then bit for bit the unfused GPU path (fresh grads and main grads).
    func testGPUFallbackShapeEqualsTheUnfusedPath() throws {
        let gpu = try requireGPU("GeLU MLP epilogue GPU test")
        XCTAssertFalse(Ops.geluEpilogueApplies(features: 100, dtype: .bfloat16, device: gpu))
        for mainGrads in [false, true] {
            let o = Operands(batch: [3, 7], hidden: 40, ffn: 100, dtype: .bfloat16, microBatches: 2, seed: 5)
            let fused = run(.fused, o, on: gpu, mainGrads: mainGrads), unfused = run(.composed, o, on: gpu, mainGrads: mainGrads)
            for (a, b) in zip(fused, unfused) { XCTAssertEqual(a.1, b.1, "\(a.0), main grads \(mainGrads)") }
            let cpu = run(.composed, o, on: .cpu, mainGrads: mainGrads)
            for (a, b) in zip(fused, cpu) {
                XCTAssertLessThan(relativeError(a.1, b.1), a.0 == "output" ? 1e-2 : 2e-2, "fallback GPU vs CPU: \(a.0)")
            }
        }
    }

    /// cuBLASLt's GELU is the tanh form, like `.geluTanh`: with w1 = 0 the pre-activation is the bias
    /// exactly, so the epilogue's h and gelu' can be read off point by point. At x = −3 the tanh form
    /// (−0.00363) and the erf form (−0.00405) differ by 10%, far more than bf16's 0.4%.
    func testGPUEpilogueIsTheTanhGelu() throws {
        let gpu = try requireGPU("GeLU MLP epilogue GPU test")
        let (tokens, hidden, ffn) = (8, 16, 64)
        let points = (0..<ffn).map { Float($0) / 8 - 4 }   // −4 … 3.875, −3 included
        let pre = Tensor(shape: [ffn], values: points).cast(to: .bfloat16)
        let x = Tensor.ones([tokens, hidden], dtype: .bfloat16)
        let (h, aux) = Ops.linearGelu(x.to(gpu), weight: Tensor.zeros([ffn, hidden], dtype: .bfloat16, device: gpu), bias: pre.to(gpu))
        let repeated = Tensor(shape: [tokens, ffn], values: Array((0..<tokens).map { _ in pre.floats() }.joined()))
        XCTAssertEqual(aux.floats(), repeated.floats(), "aux is the pre-activation")
        assertPointwise(h.floats(), tanh: Ops.unary(repeated, .geluTanh).floats(), erf: Ops.unary(repeated, .geluErf).floats(),
                        at: points, "forward")

        // g · w2 = 1 everywhere (one-hot rows of g, w2 all ones), so the DGELU output is gelu'(pre) itself.
        let g = Tensor(shape: [tokens, hidden], values: (0..<tokens * hidden).map { $0 % hidden == 0 ? 1 : 0 }).cast(to: .bfloat16)
        let w2 = Tensor.ones([hidden, ffn], dtype: .bfloat16)
        let derivative = Ops.geluLinearInputGradient(gradOutput: g.to(gpu), weight: w2.to(gpu), preActivation: aux)
        let ones = Tensor.ones([tokens, ffn])
        assertPointwise(derivative.floats(), tanh: Ops.unaryBackward(repeated, gradOutput: ones, .geluTanh).floats(),
                        erf: Ops.unaryBackward(repeated, gradOutput: ones, .geluErf).floats(), at: points, "backward")
    }

    /// Each GPU value within one bf16 ulp (2⁻⁸ relative) plus 1e-4 absolute of the tanh form, and at
    /// x = −3 closer to it than to the erf form. The absolute term allows for the GPU's tanh / exp, which
    /// may differ from libm where 1 + tanh cancels (x < −2); it is a quarter of the tanh/erf gap at
    /// x = −3 (4.1e-4 forward, 3.6e-4 for gelu').
    func assertPointwise(_ gpu: [Float], tanh: [Float], erf: [Float], at points: [Float], _ label: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        for i in gpu.indices {
            XCTAssertEqual(gpu[i], tanh[i], accuracy: abs(tanh[i]) / 256 + 1e-4, "\(label) at x = \(points[i % points.count])",
                           file: file, line: line)
        }
        let minusThree = points.firstIndex(of: -3)!
        XCTAssertLessThan(abs(gpu[minusThree] - tanh[minusThree]), abs(gpu[minusThree] - erf[minusThree]),
                          "\(label): the tanh form, not erf", file: file, line: line)
    }
}
