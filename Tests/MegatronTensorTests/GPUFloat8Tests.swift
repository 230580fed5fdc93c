import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// fp8 on the GPU against the CPU, bit for bit: casts from and to fp32 / bf16 / fp16 (the vectorized
/// kernels of fp8.cu and, for strided views, tensor_ops.cu's generic copy), scaled casts and amax.
/// Skips without a GPU.
final class GPUFloat8Tests: XCTestCase {
    private let formats: [DType] = [.float8E4M3, .float8E5M2]
    private let wide: [DType] = [.float32, .bfloat16, .float16]

    /// A CPU tensor of dtype `dtype` holding the raw byte `codes`.
    private func fp8Tensor(_ codes: [UInt8], dtype: DType) -> Tensor {
        let t = Tensor(zeros: [codes.count], dtype: dtype)
        for (i, code) in codes.enumerated() { t.pointer(as: UInt8.self)[i] = code }
        return t
    }

    /// The raw bytes of `t`'s elements in row-major order (any device, any layout).
    private func rawBytes(_ t: Tensor) -> [UInt8] {
        let host = t.to(.cpu).madeContiguous()
        return Array(UnsafeRawBufferPointer(start: host.pointer(as: UInt8.self), count: host.count * host.dtype.byteSize))
    }

    /// Same dtype, shape and bits. NaNs need only be NaN on both sides where fp16 is involved (an fp16
    /// result, or `viaHalf`: the device's fp16 conversions make one canonical NaN where the CPU keeps the
    /// sign); that is a property of the fp16 kernels, not of fp8.
    private func assertSameBits(_ gpu: Tensor, _ cpu: Tensor, _ label: String, viaHalf: Bool = false,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(gpu.dtype, cpu.dtype, label, file: file, line: line)
        XCTAssertEqual(gpu.shape, cpu.shape, label, file: file, line: line)
        let (g, c) = (rawBytes(gpu), rawBytes(cpu))
        guard g != c else { return }
        let size = cpu.dtype.byteSize
        let (gv, cv) = (gpu.floats(), cpu.floats())
        var mismatches: [String] = []
        for i in 0..<cpu.count where g[i * size..<(i + 1) * size] != c[i * size..<(i + 1) * size] {
            if (cpu.dtype == .float16 || viaHalf) && gv[i].isNaN && cv[i].isNaN { continue }
            mismatches.append("[\(i)] gpu \(gv[i]) \(g[i * size..<(i + 1) * size]) cpu \(cv[i]) \(c[i * size..<(i + 1) * size])")
        }
        XCTAssertTrue(mismatches.isEmpty, "\(label): \(mismatches.count) elements differ, first \(mismatches.prefix(4))",
                      file: file, line: line)
    }

    /// Every one of the 256 codes of each format decodes as on the CPU, into each wide type, through the
    /// vectorized kernel (contiguous) and the generic strided copy (a transposed view).
    func testAllEncodingsDecodeAsOnTheCPU() throws {
        let gpu = try requireGPU()
        for format in formats {
            let cpu = fp8Tensor((0..<256).map { UInt8($0) }, dtype: format)
            let device = cpu.to(gpu)
            for target in wide {
                assertSameBits(device.cast(to: target), cpu.cast(to: target), "\(format) -> \(target)")
                let view = device.reshaped([16, 16]).transposed(0, 1)
                assertSameBits(view.cast(to: target), cpu.reshaped([16, 16]).transposed(0, 1).cast(to: target),
                               "\(format) -> \(target), strided")
            }
        }
    }

    /// Decoding all 256 codes and encoding them again on the GPU gives every code back (e5m2's NaN codes
    /// become its one NaN code per sign, as on the CPU), from fp32, bf16 and fp16 (all hold fp8 exactly).
    func testAllEncodingsRoundTrip() throws {
        let gpu = try requireGPU()
        for format in formats {
            let codes = (0..<256).map { UInt8($0) }
            let cpu = fp8Tensor(codes, dtype: format)
            for middle in wide {
                let back = cpu.to(gpu).cast(to: middle).cast(to: format)
                assertSameBits(back, cpu.cast(to: middle).cast(to: format), "\(format) via \(middle)", viaHalf: middle == .float16)
                let returned = rawBytes(back)
                for code in codes where !cpu.floats()[Int(code)].isNaN {
                    XCTAssertEqual(returned[Int(code)], code, "\(format) 0x\(String(code, radix: 16)) via \(middle)")
                }
            }
        }
    }

    /// Random values over many magnitudes, exact ties, specials and the overflow edge, from each wide
    /// type, encode as on the CPU: a length that leaves a tail after the 8-wide vectors, and a view at
    /// an odd offset (no vectors at all).
    func testValuesEncodeAsOnTheCPU() throws {
        let gpu = try requireGPU()
        var values: [Float] = [0, -0, .infinity, -.infinity, .nan, -.nan, 448, 464, 465, 480, 57344, 61440, 61441,
                               1e-9, -1e-9, 0.0009765625, 0.0029296875, 1.0625, 1.1875, Float.leastNonzeroMagnitude]
        for (seed, scale) in [(1, 1), (2, 100), (3, 1e4), (4, 1e-3), (5, 1e-6)] as [(UInt64, Float)] {
            values += randomTensor([20_000], seed: seed, scale: scale).floats()
        }
        values += (0..<4096).map { Float(bitPattern: UInt32($0) << 19) }   // every e4m3 / e5m2 tie region
        for source in wide {
            let cpu = Tensor(shape: [values.count], values: values, dtype: source)
            let device = cpu.to(gpu)
            let half = source == .float16
            for format in formats {
                assertSameBits(device.cast(to: format), cpu.cast(to: format), "\(source) -> \(format)", viaHalf: half)
                let odd = device.narrowed(0, start: 1, length: values.count - 1)
                assertSameBits(odd.cast(to: format), cpu.narrowed(0, start: 1, length: values.count - 1).cast(to: format),
                               "\(source) -> \(format), offset 1", viaHalf: half)
            }
        }
    }

    /// fp8(x * scale) with the scale on the device, plain and saturating, and the dequantizing cast back.
    func testScaledCastsMatchTheCPU() throws {
        let gpu = try requireGPU()
        var values = randomTensor([50_001], seed: 9, scale: 30).floats()
        values += [.infinity, -.infinity, .nan, 1e6, -1e6]
        for source in wide {
            let cpu = Tensor(shape: [values.count], values: values, dtype: source)
            for format in formats {
                for saturate in [false, true] {
                    let scale = Tensor(scalar: 13.7)
                    let q = Ops.scaledCast(cpu.to(gpu), to: format, scale: scale.to(gpu), saturate: saturate)
                    let reference = Ops.scaledCast(cpu, to: format, scale: scale, saturate: saturate)
                    assertSameBits(q, reference, "\(source) -> \(format) saturate \(saturate)", viaHalf: source == .float16)
                    for target in wide {
                        let inverse = Tensor(shape: [1], values: [1 / 13.7])
                        assertSameBits(Ops.scaledCast(q, to: target, scale: inverse.to(gpu)),
                                       Ops.scaledCast(reference, to: target, scale: inverse), "\(format) -> \(target) dequantized")
                    }
                }
            }
            // A CPU scalar scale joins a GPU cast, as in elementwise ops.
            assertSameBits(Ops.scaledCast(cpu.to(gpu), to: .float8E5M2, scale: Tensor(scalar: 0.25)),
                           Ops.scaledCast(cpu, to: .float8E5M2, scale: Tensor(scalar: 0.25)), "\(source): CPU scalar scale")
        }
    }

    /// amax on the GPU equals the CPU's exactly: many blocks, a tail, a NaN, empty, and fp8 input.
    func testAbsMaxMatchesTheCPU() throws {
        let gpu = try requireGPU()
        for source in wide {
            let cpu = randomTensor([1_000_005], dtype: source, seed: 11, scale: 3)
            XCTAssertEqual(Ops.absMax(cpu.to(gpu)).item().bitPattern, Ops.absMax(cpu).item().bitPattern, "\(source)")
            let strided = cpu.reshaped([5, 200_001]).transposed(0, 1)
            XCTAssertEqual(Ops.absMax(strided.to(gpu)).item(), Ops.absMax(strided).item(), "\(source) strided")
        }
        var values = randomTensor([4099], seed: 12).floats()
        values[4000] = .nan
        XCTAssertTrue(Ops.absMax(Tensor(shape: [4099], values: values).to(gpu)).item().isNaN)
        XCTAssertEqual(Ops.absMax(Tensor(zeros: [0], device: gpu)).item(), 0)
        let codes = fp8Tensor((0..<256).map { UInt8($0) }.filter { $0 & 0x7F != 0x7F }, dtype: .float8E4M3)
        XCTAssertEqual(Ops.absMax(codes.to(gpu)).item(), 448)
        XCTAssertEqual(Ops.absMax(codes.to(gpu)).device, gpu)
    }
}
