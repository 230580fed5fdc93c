import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// The FP8 GPU path against the CPU reference: fp8.cu's scale updates bit for bit (TE's recipe, the torch
/// fixture's sequences), cuBLASLt's FP8 GEMM against the dequantized fp32 product for every operand pairing
/// Transformer Engine uses and both output types. Skips without a GPU; needs compute capability 8.9+ for the GEMM.
final class FP8GPUTests: XCTestCase {
    func testScaleUpdatesMatchTheReferenceBitForBit() throws {
        let gpu = try requireGPU("FP8 scale-update GPU tests")
        for case_ in FP8ReferenceTests.fixture.delayed {
            let algo = FP8AmaxComputeAlgo(rawValue: case_.algo)!
            var state = (history: Tensor.zeros([case_.length], device: gpu), scale: Tensor.ones([1], device: gpu),
                         scaleInverse: Tensor.ones([1], device: gpu))
            for (step, bits) in case_.amax_bits.enumerated() {
                let amax = Tensor(shape: [1], values: [Float(bitPattern: bits)]).to(gpu)
                state = Ops.fp8DelayedScaleUpdate(history: state.history, amax: amax, scale: state.scale, fp8Max: case_.fp8_max,
                                                  margin: case_.margin, algo: algo)
                XCTAssertEqual(state.scale.to(.cpu).item().bitPattern, case_.scale_bits[step], "len \(case_.length) \(case_.algo) step \(step)")
                XCTAssertEqual(state.scaleInverse.to(.cpu).item(), 1 / state.scale.to(.cpu).item())
            }
            XCTAssertEqual(state.history.to(.cpu).floats().map { $0.isNaN ? 0x7FC0_0000 : $0.bitPattern }, case_.history_bits)
        }
        for case_ in FP8ReferenceTests.fixture.current {
            let amax = Tensor(shape: [1], values: [Float(bitPattern: case_.amax_bits)]).to(gpu)
            XCTAssertEqual(Ops.fp8CurrentScale(amax: amax, fp8Max: case_.fp8_max).scale.to(.cpu).item().bitPattern, case_.scale_bits)
        }
    }

    func testFP8GemmMatchesTheCPUReference() throws {
        let gpu = try requireGPU("FP8 GEMM GPU tests")
        let (m, n, k) = (80, 48, 96)
        for (aType, bType) in [(DType.float8E4M3, DType.float8E4M3), (.float8E5M2, .float8E4M3), (.float8E4M3, .float8E5M2)] {
            let a = FP8Tensor.quantize(Tensor.normal([m, k], std: 2, generator: PhiloxGenerator(seed: 1)), to: aType, scale: Tensor(scalar: 64))
            let b = FP8Tensor.quantize(Tensor.normal([n, k], std: 0.01, generator: PhiloxGenerator(seed: 2)), to: bType, scale: Tensor(scalar: 8192))
            let onGPU = FP8Tensor(data: a.data.to(gpu), scaleInverse: a.scaleInverse.to(gpu))
            let bOnGPU = FP8Tensor(data: b.data.to(gpu), scaleInverse: b.scaleInverse.to(gpu))
            for output in [DType.float32, .bfloat16] {
                let want = Ops.fp8Matmul(a, b, outputType: .float32).floats()
                let got = Ops.fp8Matmul(onGPU, bOnGPU, outputType: output).to(.cpu)
                XCTAssertEqual(got.dtype, output)
                XCTAssertEqual(got.shape, [m, n])
                let scale = want.map(abs).max()!
                let tolerance: Float = output == .float32 ? 1e-5 : 1.0 / 128
                for (g, w) in zip(got.floats(), want) {
                    XCTAssertEqual(g, w, accuracy: tolerance * max(abs(w), 0.01 * scale), "\(aType) x \(bType) -> \(output)")
                }
            }
        }
    }

    /// The torch fixture's product (K 32, N 8: the smallest shapes cuBLASLt's FP8 kernels take).
    func testFP8GemmMatchesTorch() throws {
        let gpu = try requireGPU("FP8 GEMM GPU tests")
        let g = FP8ReferenceTests.fixture.gemm
        func operand(_ codes: [UInt8], rows: Int, _ dtype: DType, _ inverse: Float) -> FP8Tensor {
            let t = Tensor(zeros: [rows, g.k], dtype: dtype)
            for (i, code) in codes.enumerated() { t.pointer(as: UInt8.self)[i] = code }
            return FP8Tensor(data: t.to(gpu), scaleInverse: Tensor(shape: [1], values: [inverse]).to(gpu))
        }
        let product = Ops.fp8Matmul(operand(g.a, rows: g.m, .float8E4M3, g.a_scale_inverse), operand(g.b, rows: g.n, .float8E5M2, g.b_scale_inverse),
                                    outputType: .float32).to(.cpu).floats()
        for (got, want) in zip(product, g.fp32) { XCTAssertEqual(got, want, accuracy: 1e-5 * max(1, abs(want))) }
    }
}
