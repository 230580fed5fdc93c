import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// The FP8 GPU path against the CPU reference (itself checked against torch: FP8ReferenceTests): fp8.cu's
/// scale updates and cast-transpose bit for bit, cuBLASLt's FP8 GEMM against the dequantized fp32 product for every operand pairing
/// Transformer Engine uses and both output types. Skips without a GPU; needs compute capability 8.9+ for the GEMM.
final class FP8GPUTests: XCTestCase {
    /// A sequence of amaxes with zero, tiny (the scale overflows), infinite and NaN ones, through fp8.cu's kernels
    /// and the CPU reference (itself checked against torch: FP8ReferenceTests).
    func testScaleUpdatesMatchTheReferenceBitForBit() throws {
        let gpu = try requireGPU("FP8 scale-update GPU tests")
        let amaxes: [Float] = [0, 2.5, 0.75, 3e-3, 1e-30, 17, 0.125, 6, .infinity, 0.5, 0.25, 1e-40, .nan, 2, 3, 4, 5, 6, 1]
        for (length, algo, margin, fp8Max) in [(1, FP8AmaxComputeAlgo.mostRecent, Float(0), Float(448)), (4, .max, 0, 448),
                                               (3, .mostRecent, 1, 57344), (16, .max, 2, 57344)] {
            var onGPU = (history: Tensor.zeros([length], device: gpu), scale: Tensor.ones([1], device: gpu),
                         scaleInverse: Tensor.ones([1], device: gpu))
            var onCPU = (history: Tensor.zeros([length]), scale: Tensor.ones([1]), scaleInverse: Tensor.ones([1]))
            for (step, amax) in amaxes.enumerated() {
                let a = Tensor(shape: [1], values: [amax])
                onGPU = Ops.fp8DelayedScaleUpdate(history: onGPU.history, amax: a.to(gpu), scale: onGPU.scale, fp8Max: fp8Max,
                                                  margin: margin, algo: algo)
                onCPU = Ops.fp8DelayedScaleUpdate(history: onCPU.history, amax: a, scale: onCPU.scale, fp8Max: fp8Max, margin: margin, algo: algo)
                let label = "len \(length) \(algo) step \(step)"
                XCTAssertEqual(onGPU.scale.to(.cpu).item().bitPattern, onCPU.scale.item().bitPattern, label)
                XCTAssertEqual(onGPU.scaleInverse.to(.cpu).item().bitPattern, onCPU.scaleInverse.item().bitPattern, label)
                XCTAssertEqual(onGPU.history.to(.cpu).floats().map { $0.isNaN ? 0x7FC0_0000 : $0.bitPattern },
                               onCPU.history.floats().map { $0.isNaN ? 0x7FC0_0000 : $0.bitPattern }, label)
            }
        }
        for amax: Float in [0, 1, 3.3, 1e-40, 7e5, .infinity, .nan] {
            for fp8Max: Float in [448, 57344] {
                let gpuScale = Ops.fp8CurrentScale(amax: Tensor(shape: [1], values: [amax]).to(gpu), fp8Max: fp8Max)
                let cpuScale = Ops.fp8CurrentScale(amax: Tensor(shape: [1], values: [amax]), fp8Max: fp8Max)
                XCTAssertEqual(gpuScale.scale.to(.cpu).item().bitPattern, cpuScale.scale.item().bitPattern, "amax \(amax)")
                XCTAssertEqual(gpuScale.scaleInverse.to(.cpu).item().bitPattern, cpuScale.scaleInverse.item().bitPattern, "amax \(amax)")
            }
        }
    }

    /// fp8.cu's cast_transpose (the codes, their transpose and the amax in one pass) against the CPU's quantize,
    /// transposedCopy and absMax: bit for bit, for every input dtype and fp8 format, ragged tiles, saturating
    /// scales, infinities, subnormals and (in one matrix) a NaN; and without the transpose and amax.
    func testQuantizeTransposingMatchesTheCPUBitForBit() throws {
        let gpu = try requireGPU("FP8 cast-transpose GPU tests")
        for (rows, columns, withNaN) in [(33, 70, false), (64, 96, true), (1, 5, false), (130, 8, false)] {
            var values = Tensor.normal([rows * columns], std: 3, generator: PhiloxGenerator(seed: UInt64(rows))).floats()
            let specials: [Float] = [.infinity, -.infinity, -0, 1e-30, -3e-3, -600, 70000] + (withNaN ? [.nan] : [])
            for (i, v) in specials.enumerated() where i * 5 < values.count { values[i * 5] = v }
            for dtype in [DType.float32, .bfloat16, .float16] {
                let x = Tensor(shape: [rows, columns], values: values).cast(to: dtype)
                for format in [DType.float8E4M3, .float8E5M2] {
                    for scale: Float in [1, 200] {
                        let (s, inverse) = (Tensor(shape: [1], values: [scale]), Tensor(shape: [1], values: [1 / scale]))
                        let label = "\(rows)x\(columns) \(dtype) -> \(format) scale \(scale)"
                        let want = Ops.fp8Quantize(x, to: format, scale: s, scaleInverse: inverse, transposed: true, recordAmax: true)
                        let got = Ops.fp8Quantize(x.to(gpu), to: format, scale: s.to(gpu), scaleInverse: inverse.to(gpu),
                                                  transposed: true, recordAmax: true)
                        XCTAssertEqual(Self.codes(got.operand.rowwise.data), Self.codes(want.operand.rowwise.data), label)
                        XCTAssertEqual(got.operand.transposed?.shape, [columns, rows], label)
                        XCTAssertEqual(Self.codes(got.operand.transposed!.data), Self.codes(want.operand.transposed!.data), label)
                        XCTAssertEqual(got.operand.transposed?.scaleInverse.to(.cpu).item(), 1 / scale, label)
                        let (gotAmax, wantAmax) = (got.amax!.to(.cpu).item(), want.amax!.item())
                        XCTAssertEqual(gotAmax.isNaN, withNaN, label)
                        if !withNaN { XCTAssertEqual(gotAmax.bitPattern, wantAmax.bitPattern, label) }
                        let plain = Ops.fp8Quantize(x.to(gpu), to: format, scale: s.to(gpu), scaleInverse: inverse.to(gpu),
                                                    transposed: false, recordAmax: false)
                        XCTAssertNil(plain.operand.transposed, label)
                        XCTAssertNil(plain.amax, label)
                        XCTAssertEqual(Self.codes(plain.operand.rowwise.data), Self.codes(want.operand.rowwise.data), label)
                    }
                }
            }
        }
    }

    /// An fp8 tensor's codes, on the host.
    private static func codes(_ t: Tensor) -> [UInt8] {
        let c = t.to(.cpu).madeContiguous()
        return Array(UnsafeBufferPointer(start: c.pointer(as: UInt8.self), count: c.count))
    }

    func testFP8GemmMatchesTheCPUReference() throws {
        let gpu = try requireGPU("FP8 GEMM GPU tests")
        // 40 x 12 is not a cuBLASLt FP8 shape (K % 16): the dequantized product on the GPU.
        let pairs = [(DType.float8E4M3, DType.float8E4M3), (.float8E5M2, .float8E4M3), (.float8E4M3, .float8E5M2)]
        for (m, n, k) in [(80, 48, 96), (5, 12, 40)] {
            try checkProducts(m: m, n: n, k: k, pairs: pairs, on: gpu)
        }
    }

    /// Forward GEMMs' fast accumulation (Transformer Engine's choice) on a long reduction: no fp32 promotions
    /// between the tensor cores' partial sums (about 14 bits), so its error grows with K, to at most about K / 32
    /// roundings of 2^-14 of the running sum (2^-8 at K = 2048); each element is held to 2^-7 of its products'
    /// magnitudes, twice that. The split-accumulation product of the same operands keeps the tighter 2^-10.
    func testFastAccumulationStaysWithinItsPrecision() throws {
        let gpu = try requireGPU("FP8 fast-accumulation GPU test")
        let (m, n, k) = (32, 48, 2048)
        let a = FP8Tensor.quantize(Tensor.normal([m, k], std: 2, generator: PhiloxGenerator(seed: 3)), to: .float8E4M3, scale: Tensor(scalar: 64))
        let b = FP8Tensor.quantize(Tensor.normal([n, k], std: 0.01, generator: PhiloxGenerator(seed: 4)), to: .float8E4M3, scale: Tensor(scalar: 8192))
        let (onGPU, bOnGPU) = (FP8Tensor(data: a.data.to(gpu), scaleInverse: a.scaleInverse.to(gpu)),
                               FP8Tensor(data: b.data.to(gpu), scaleInverse: b.scaleInverse.to(gpu)))
        let want = Ops.fp8Matmul(a, b, outputType: .float32).floats()
        let magnitudes = Self.absoluteProducts(a.dequantized().floats(), b.dequantized().floats(), m: m, n: n, k: k)
        for (fast, divisor) in [(true, Float(128)), (false, 1024)] {
            let got = Ops.fp8Matmul(onGPU, bOnGPU, outputType: .float32, fastAccumulation: fast).to(.cpu).floats()
            for ((g, w), sum) in zip(zip(got, want), magnitudes) {
                XCTAssertEqual(g, w, accuracy: sum / divisor, "fast accumulation \(fast)")
            }
        }
    }

    private func checkProducts(m: Int, n: Int, k: Int, pairs: [(DType, DType)], on gpu: Device) throws {
        for (aType, bType) in pairs {
            let a = FP8Tensor.quantize(Tensor.normal([m, k], std: 2, generator: PhiloxGenerator(seed: 1)), to: aType, scale: Tensor(scalar: 64))
            let b = FP8Tensor.quantize(Tensor.normal([n, k], std: 0.01, generator: PhiloxGenerator(seed: 2)), to: bType, scale: Tensor(scalar: 8192))
            let onGPU = FP8Tensor(data: a.data.to(gpu), scaleInverse: a.scaleInverse.to(gpu))
            let bOnGPU = FP8Tensor(data: b.data.to(gpu), scaleInverse: b.scaleInverse.to(gpu))
            for output in [DType.float32, .bfloat16] {
                let want = Ops.fp8Matmul(a, b, outputType: .float32).floats()
                let got = Ops.fp8Matmul(onGPU, bOnGPU, outputType: output).to(.cpu)
                XCTAssertEqual(got.dtype, output)
                XCTAssertEqual(got.shape, [m, n])
                // Hopper's FP8 tensor cores accumulate with fewer mantissa bits than fp32: on an H100 the fp32
                // outputs were off by up to ~1.2e-4 of the sum of the products' magnitudes (about 2^-13), so
                // each element is held to 2^-10 of that sum, plus bf16's rounding of the result.
                let magnitudes = Self.absoluteProducts(a.dequantized().floats(), b.dequantized().floats(), m: m, n: n, k: k)
                for ((g, w), sum) in zip(zip(got.floats(), want), magnitudes) {
                    let rounding: Float = output == .bfloat16 ? abs(w) / 128 : 0
                    XCTAssertEqual(g, w, accuracy: sum / 1024 + rounding, "\(m)x\(n)x\(k) \(aType) x \(bType) -> \(output)")
                }
            }
        }
    }

    /// Σ_k |a[i, k]| · |b[j, k]| for each output element (i, j): the scale of an FP8 GEMM's accumulation error.
    private static func absoluteProducts(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int) -> [Float] {
        var out = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum: Float = 0
                for p in 0..<k { sum += abs(a[i * k + p]) * abs(b[j * k + p]) }
                out[i * n + j] = sum
            }
        }
        return out
    }
}
