import Foundation
import XCTest
@testable import MegatronTensor

/// The CPU reference of FP8 training against PyTorch (Fixtures/fp8/fp8_reference.json, from
/// scripts/fixtures/make_fp8_fixtures.py): casts bit for bit as torch.float8_e4m3fn / float8_e5m2 (plain and
/// saturating), scaled casts, Transformer Engine's delayed and current scale updates, the FP8 GEMM's product.
final class FP8ReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Cast: Decodable {
            var input_bits: [UInt32], e4m3: [UInt8], e5m2: [UInt8], e4m3_saturating: [UInt8], e5m2_saturating: [UInt8]
        }
        struct Scaled: Decodable { var scale: Float, input_bits: [UInt32], e4m3: [UInt8], e5m2: [UInt8] }
        struct Delayed: Decodable {
            var length: Int, algo: String, margin: Float, fp8_max: Float
            var amax_bits: [UInt32], scale_bits: [UInt32], history_bits: [UInt32]
        }
        struct Current: Decodable { var amax_bits: UInt32, fp8_max: Float, scale_bits: UInt32 }
        struct Gemm: Decodable {
            var m: Int, n: Int, k: Int, a: [UInt8], b: [UInt8], a_scale_inverse: Float, b_scale_inverse: Float
            var fp32: [Float], bf16: [Float]
        }
        var cast: Cast, scaled: [Scaled], delayed: [Delayed], current: [Current], gemm: Gemm
    }

    static let loaded = Result<Fixture, Error> {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fp8/fp8_reference.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    private var fixture: Fixture { get throws { try Self.loaded.get() } }

    private func codes(_ t: Tensor) -> [UInt8] {
        let c = t.madeContiguous()
        return Array(UnsafeBufferPointer(start: c.pointer(as: UInt8.self), count: c.count))
    }

    private func floats(_ bits: [UInt32]) -> Tensor {
        Tensor(shape: [bits.count], values: bits.map { Float(bitPattern: $0) })
    }

    private func assertCodes(_ got: [UInt8], _ want: [UInt8], _ inputs: [UInt32], _ label: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, label, file: file, line: line)
        let wrong = zip(got, want).enumerated().filter { $0.element.0 != $0.element.1 }
        for (i, pair) in wrong.prefix(5) {
            XCTFail("\(label): \(Float(bitPattern: inputs[i])) (0x\(String(inputs[i], radix: 16))) gives 0x\(String(pair.0, radix: 16)), "
                    + "torch 0x\(String(pair.1, radix: 16))", file: file, line: line)
        }
        XCTAssertEqual(wrong.count, 0, label, file: file, line: line)
    }

    /// torch 2.13's e4m3 cast saturates, as the saturating cast here; the plain cast here gives NaN past 464
    /// (as earlier torch releases did), so it is compared below that.
    func testCastsMatchTorchBitForBit() throws {
        let c = try fixture.cast
        let x = floats(c.input_bits)
        let one = Tensor(scalar: 1)
        assertCodes(codes(Ops.scaledCast(x, to: .float8E4M3, scale: one, saturate: true)), c.e4m3, c.input_bits, "e4m3 (torch saturates)")
        let inRange = c.input_bits.indices.filter { abs(Float(bitPattern: c.input_bits[$0])) <= 464 || Float(bitPattern: c.input_bits[$0]).isNaN }
        XCTAssertGreaterThan(inRange.count, 2000)
        let plain = codes(x.cast(to: .float8E4M3))
        assertCodes(inRange.map { plain[$0] }, inRange.map { c.e4m3[$0] }, inRange.map { c.input_bits[$0] }, "e4m3 below overflow")
        assertCodes(codes(x.cast(to: .float8E5M2)), c.e5m2, c.input_bits, "e5m2")
        assertCodes(codes(Ops.scaledCast(x, to: .float8E4M3, scale: one, saturate: true)), c.e4m3_saturating, c.input_bits, "e4m3 saturating")
        assertCodes(codes(Ops.scaledCast(x, to: .float8E5M2, scale: one, saturate: true)), c.e5m2_saturating, c.input_bits, "e5m2 saturating")
    }

    func testScaledQuantizationMatchesTorch() throws {
        for case_ in try fixture.scaled {
            let x = floats(case_.input_bits)
            let scale = Tensor(scalar: case_.scale)
            let e4m3 = FP8Tensor.quantize(x, to: .float8E4M3, scale: scale)
            assertCodes(codes(e4m3.data), case_.e4m3, case_.input_bits, "e4m3 x \(case_.scale)")
            assertCodes(codes(FP8Tensor.quantize(x, to: .float8E5M2, scale: scale).data), case_.e5m2, case_.input_bits, "e5m2 x \(case_.scale)")
            XCTAssertEqual(e4m3.scaleInverse.item(), 1 / case_.scale)
        }
    }

    /// Step by step through a sequence of amaxes (zero, tiny, infinite, NaN among them), on host floats and
    /// through the tensor op the CPU device runs.
    func testDelayedScalingMatchesTransformerEngine() throws {
        for case_ in try fixture.delayed {
            let algo = FP8AmaxComputeAlgo(rawValue: case_.algo)!
            let label = "len \(case_.length) \(case_.algo) margin \(case_.margin)"
            var history = [Float](repeating: 0, count: case_.length), scale: Float = 1
            var tensors = (history: Tensor.zeros([case_.length]), scale: Tensor.ones([1]), scaleInverse: Tensor.ones([1]))
            for (step, amaxBits) in case_.amax_bits.enumerated() {
                let amax = Float(bitPattern: amaxBits)
                history[0] = amax
                let r = FP8ScaleMath.delayedUpdate(history: history, scale: scale, fp8Max: case_.fp8_max, margin: case_.margin, algo: algo)
                (history, scale) = (r.history, r.scale)
                XCTAssertEqual(scale.bitPattern, case_.scale_bits[step], "\(label) step \(step): \(scale) vs \(Float(bitPattern: case_.scale_bits[step]))")
                XCTAssertEqual(r.scaleInverse, 1 / scale)
                tensors = Ops.fp8DelayedScaleUpdate(history: tensors.history, amax: Tensor(shape: [1], values: [amax]), scale: tensors.scale,
                                                    fp8Max: case_.fp8_max, margin: case_.margin, algo: algo)
                XCTAssertEqual(tensors.scale.item().bitPattern, case_.scale_bits[step], "\(label) step \(step), tensor op")
            }
            XCTAssertEqual(history.map { $0.isNaN ? 0x7FC0_0000 : $0.bitPattern }, case_.history_bits, label)
        }
    }

    func testCurrentScalingMatchesTransformerEngine() throws {
        for case_ in try fixture.current {
            let amax = Float(bitPattern: case_.amax_bits)
            let r = FP8ScaleMath.currentScale(amax: amax, fp8Max: case_.fp8_max)
            XCTAssertEqual(r.scale.bitPattern, case_.scale_bits, "amax \(amax), max \(case_.fp8_max)")
            XCTAssertEqual(Ops.fp8CurrentScale(amax: Tensor(shape: [1], values: [amax]), fp8Max: case_.fp8_max).scaleInverse.item(), 1 / r.scale)
        }
    }

    /// The product of the dequantized operands in fp32 (to accumulation-order rounding), and rounded to bf16.
    func testFP8ProductMatchesTorch() throws {
        let g = try fixture.gemm
        func operand(_ codes: [UInt8], rows: Int, _ dtype: DType, _ inverse: Float) -> FP8Tensor {
            let t = Tensor(zeros: [rows, g.k], dtype: dtype)
            for (i, code) in codes.enumerated() { t.pointer(as: UInt8.self)[i] = code }
            return FP8Tensor(data: t, scaleInverse: Tensor(shape: [1], values: [inverse]))
        }
        let a = operand(g.a, rows: g.m, .float8E4M3, g.a_scale_inverse), b = operand(g.b, rows: g.n, .float8E5M2, g.b_scale_inverse)
        let fp32 = Ops.fp8Matmul(a, b, outputType: .float32)
        XCTAssertEqual(fp32.shape, [g.m, g.n])
        for (got, want) in zip(fp32.floats(), g.fp32) { XCTAssertEqual(got, want, accuracy: 1e-5 * max(1, abs(want))) }
        let bf16 = Ops.fp8Matmul(a, b, outputType: .bfloat16)
        XCTAssertEqual(bf16.dtype, .bfloat16)
        for (got, want) in zip(bf16.floats(), g.bf16) { XCTAssertEqual(got, want, accuracy: abs(want) / 128) }
    }
}
