import XCTest
@testable import MegatronTensor

/// FP8 scaling on the CPU (the reference the GPU kernels are compared against).
final class FP8ScalingTests: XCTestCase {
    private func codes(_ t: Tensor) -> [UInt8] {
        Array(UnsafeBufferPointer(start: t.madeContiguous().pointer(as: UInt8.self), count: t.count))
    }

    /// Overflow: e4m3 gives NaN (0x7F / 0xFF) and e5m2 infinity (0x7C / 0xFC) unless saturating, which
    /// clamps to 448 (0x7E) / 57344 (0x7B), infinities included; NaN stays NaN either way.
    func testSaturationAndOverflow() {
        let x = Tensor(shape: [6], values: [500, -500, .infinity, -.infinity, .nan, 1.5])
        let one = Tensor(scalar: 1)
        XCTAssertEqual(codes(Ops.scaledCast(x, to: .float8E4M3, scale: one)), [0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0x3C])
        XCTAssertEqual(codes(Ops.scaledCast(x, to: .float8E4M3, scale: one, saturate: true)), [0x7E, 0xFE, 0x7E, 0xFE, 0x7F, 0x3C])
        let big = Tensor(shape: [3], values: [70000, -.infinity, .nan])
        XCTAssertEqual(codes(Ops.scaledCast(big, to: .float8E5M2, scale: one)), [0x7C, 0xFC, 0x7F])
        XCTAssertEqual(codes(Ops.scaledCast(big, to: .float8E5M2, scale: one, saturate: true)), [0x7B, 0xFB, 0x7F])
        XCTAssertEqual(FloatFormats.largestFinite(.float8E4M3), FloatFormats.float(float8E4M3Bits: 0x7E))
        XCTAssertEqual(FloatFormats.largestFinite(.float8E5M2), FloatFormats.float(float8E5M2Bits: 0x7B))
    }

    /// Quantize multiplies by the scale before rounding; dequantize multiplies the decoded value.
    func testScaleIsAppliedInFP32BeforeRounding() {
        // 0.1 * 64 = 6.4 -> e4m3 6.5 (0x4D); 0.1 itself -> 0.1015625 (0x1D).
        let x = Tensor(shape: [2], values: [0.1, 0.1])
        let q = Ops.scaledCast(x, to: .float8E4M3, scale: Tensor(scalar: 64))
        XCTAssertEqual(codes(q), [0x4D, 0x4D])
        XCTAssertEqual(Ops.scaledCast(q, to: .float32, scale: Tensor(shape: [1], values: [1.0 / 64])).floats(), [0.1015625, 0.1015625])
        XCTAssertEqual(codes(x.cast(to: .float8E4M3)), [0x1D, 0x1D])
        // A bf16 source and output go through fp32 the same way.
        let b = Ops.scaledCast(Tensor(shape: [1], values: [3], dtype: .bfloat16), to: .bfloat16, scale: Tensor(scalar: 0.5))
        XCTAssertEqual(b.dtype, .bfloat16)
        XCTAssertEqual(b.floats(), [1.5])
    }

    func testAbsMax() {
        XCTAssertEqual(Ops.absMax(Tensor(shape: [4], values: [-3, 2, -0.5, 0])).item(), 3)
        XCTAssertEqual(Ops.absMax(Tensor(shape: [2, 2], values: [-1, .infinity, 2, 3]).transposed(0, 1)).item(), .infinity)
        XCTAssertTrue(Ops.absMax(Tensor(shape: [3], values: [1, .nan, -.infinity])).item().isNaN)
        XCTAssertEqual(Ops.absMax(Tensor(zeros: [0])).item(), 0)
        XCTAssertEqual(Ops.absMax(Tensor(shape: [2], values: [-448, 3], dtype: .float8E4M3)).item(), 448)
        XCTAssertEqual(Ops.absMax(Tensor(shape: [1], values: [7])).shape, [])
    }
}
