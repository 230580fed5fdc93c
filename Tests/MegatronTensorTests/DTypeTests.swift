import XCTest
@testable import MegatronTensor

final class DTypeTests: XCTestCase {
    func testBFloat16RoundsToNearestEven() {
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
        XCTAssertEqual(FloatFormats.bfloat16Bits(1 + 0x1p-8), 0x3F80)
        // 1 + 3*2^-8 ties between 1 + 2^-7 (odd mantissa) and 1 + 2^-6 (even): rounds up.
        XCTAssertEqual(FloatFormats.bfloat16Bits(1 + 3 * 0x1p-8), 0x3F82)
        XCTAssertEqual(FloatFormats.bfloat16Bits(-2.5), 0xC020)
        XCTAssertEqual(FloatFormats.float(bfloat16Bits: 0x4049), 3.140625)
        XCTAssertTrue(FloatFormats.float(bfloat16Bits: FloatFormats.bfloat16Bits(.nan)).isNaN)
        XCTAssertEqual(FloatFormats.float(bfloat16Bits: FloatFormats.bfloat16Bits(.infinity)), .infinity)
    }

    func testFloat8E4M3MatchesPyTorchEncodings() {
        // Values from torch.tensor([...]).to(torch.float8_e4m3fn).view(torch.uint8).
        let cases: [(Float, UInt8)] = [(1, 0x38), (-1, 0xB8), (448, 0x7E), (0.5, 0x30), (0.1, 0x1D),
                                       (3.3, 0x45), (0x1p-9, 0x01), (0x1p-7, 0x04), (0, 0x00), (240, 0x77)]
        for (x, bits) in cases {
            XCTAssertEqual(FloatFormats.float8E4M3Bits(x), bits, "e4m3 of \(x)")
        }
        XCTAssertEqual(FloatFormats.float(float8E4M3Bits: 0x7E), 448)
        XCTAssertTrue(FloatFormats.float(float8E4M3Bits: 0x7F).isNaN)
        XCTAssertTrue(FloatFormats.float(float8E4M3Bits: FloatFormats.float8E4M3Bits(1000)).isNaN, "overflow is NaN")
        for bits in UInt8(0)...UInt8(0x7E) {
            let value = FloatFormats.float(float8E4M3Bits: bits)
            XCTAssertEqual(FloatFormats.float8E4M3Bits(value), bits, "round trip of e4m3 0x\(String(bits, radix: 16))")
        }
    }

    func testFloat8E5M2MatchesPyTorchEncodings() {
        let cases: [(Float, UInt8)] = [(1, 0x3C), (-2, 0xC0), (57344, 0x7B), (0.1, 0x2E), (0x1p-16, 0x01)]
        for (x, bits) in cases {
            XCTAssertEqual(FloatFormats.float8E5M2Bits(x), bits, "e5m2 of \(x)")
        }
        XCTAssertEqual(FloatFormats.float(float8E5M2Bits: 0x7C), .infinity)
        XCTAssertEqual(FloatFormats.float8E5M2Bits(1e6), 0x7C, "overflow is infinity")
        for bits in UInt8(0)...UInt8(0x7B) {
            XCTAssertEqual(FloatFormats.float8E5M2Bits(FloatFormats.float(float8E5M2Bits: bits)), bits)
        }
    }

    func testCastsBetweenStorageTypes() {
        let x = Tensor(shape: [4], values: [1.5, -2.25, 1000.7, 0.333333])
        XCTAssertEqual(x.cast(to: .float16).floats(), [1.5, -2.25, 1000.5, 0.33325195])
        XCTAssertEqual(x.cast(to: .bfloat16).floats(), [1.5, -2.25, 1000, 0.33398438])
        XCTAssertEqual(x.cast(to: .int32).ints(), [1, -2, 1000, 0])
        XCTAssertEqual(Tensor(shape: [3], ints: [0, 2, 0]).cast(to: .bool).ints(), [0, 1, 0])
    }

    /// PyTorch's promotion: a scalar does not widen a tensor of its own kind, but a float scalar makes ints float,
    /// and two shaped tensors promote to the wider.
    func testScalarsDoNotPromoteTensors() {
        let h = Tensor(shape: [2], values: [1, 2], dtype: .bfloat16), s = Tensor(scalar: 0.5)
        XCTAssertEqual(Ops.binary(h, s, .mul).dtype, .bfloat16)
        XCTAssertEqual(Ops.binary(s, h, .div).dtype, .bfloat16)
        XCTAssertEqual(Ops.binary(h, s, .mul).floats(), [0.5, 1])
        XCTAssertEqual(Ops.binary(Tensor(shape: [2], ints: [1, 2], dtype: .int64), s, .mul).dtype, .float32)
        XCTAssertEqual(Ops.binary(h, Tensor(shape: [1], values: [2]), .mul).dtype, .float32)
        XCTAssertEqual(Ops.where(Tensor(shape: [2], ints: [1, 0], dtype: .bool), h, Tensor(scalar: 0)).dtype, .bfloat16)
    }
}
