import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// The fused rotary embedding (one primitive, `Functional.rotaryEmbedding`) on the CPU: the same
/// values as Megatron's unfused composition, its backward, partial rotary dims, strided inputs and
/// per-row positions.
final class RotaryEmbeddingTests: XCTestCase {
    /// Megatron's composition, as RotaryEmbedding computed it before the fused primitive:
    /// `x * cos + rotate_half(x) * sin` on the first rotaryDim channels, the rest concatenated.
    static func unfused(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let (headDim, rotaryDim) = (x.size(-1), cos.size(-1))
        let (cos, sin) = (cos.cast(to: x.dtype), sin.cast(to: x.dtype))
        let rotated = x.narrow(-1, start: 0, length: rotaryDim)
        let halves = rotated.chunk(2, dim: -1)
        let out = rotated * cos + concat([-halves[1], halves[0]], dim: -1) * sin
        if rotaryDim == headDim { return out }
        return concat([out, x.narrow(-1, start: rotaryDim, length: headDim - rotaryDim)], dim: -1)
    }

    func randomInput(_ shape: [Int], seed: UInt64, dtype: DType = .float32) -> Tensor {
        Tensor.normal(shape, dtype: dtype, generator: PhiloxGenerator(seed: seed))
    }

    /// fp32: the fused loop rounds each product and the sum as the composition does, so it is bit-exact.
    func testForwardEqualsTheUnfusedComposition() {
        for percent: Float in [1, 0.5] {
            let rope = RotaryEmbedding(kvChannels: 16, rotaryPercent: percent, base: 10000)
            let x = randomInput([2, 3, 7, 16], seed: 1)
            let (cos, sin) = rope.tables(positions: Array(5..<12))
            XCTAssertEqual(rope(x, offset: 5).floats(), Self.unfused(x, cos: cos, sin: sin).floats(), "rotaryPercent \(percent)")
        }
    }

    /// bf16: one rounding of an fp32 result instead of one per op, so within a bf16 step of the composition.
    func testBFloat16ForwardIsNearTheUnfusedComposition() {
        let rope = RotaryEmbedding(kvChannels: 32, rotaryPercent: 1, base: 10000)
        let x = randomInput([2, 4, 9, 32], seed: 2, dtype: .bfloat16)
        let (cos, sin) = rope.tables(positions: Array(0..<9))
        let fused = rope(x)
        XCTAssertEqual(fused.dtype, .bfloat16)
        for (a, b) in zip(fused.floats(), Self.unfused(x, cos: cos, sin: sin).floats()) {
            XCTAssertEqual(a, b, accuracy: 2e-2 * max(1, abs(b)))
        }
    }

    /// A unit vector on channel 0 at position p turns by angle p (frequency base^0 = 1) into channels 0
    /// and half; channel 1 turns by p * base^(-2/rotaryDim); channels past rotaryDim stay.
    func testKnownAngles() {
        let rope = RotaryEmbedding(kvChannels: 8, rotaryPercent: 0.5, base: 100)   // rotaryDim 4, half 2
        var values = [Float](repeating: 0, count: 3 * 8)
        for p in 0..<3 { values[p * 8] = 1; values[p * 8 + 1] = 2; values[p * 8 + 6] = 5 }
        let out = rope(Tensor(shape: [1, 1, 3, 8], values: values)).floats()
        for p in 0..<3 {
            let (a0, a1) = (Double(p), Double(p) / 10)   // 100^(-2/4) = 1/10
            let expected: [Double] = [Foundation.cos(a0), 2 * Foundation.cos(a1), Foundation.sin(a0), 2 * Foundation.sin(a1), 0, 0, 5, 0]
            for j in 0..<8 { XCTAssertEqual(Double(out[p * 8 + j]), expected[j], accuracy: 1e-6, "position \(p) channel \(j)") }
        }
    }

    /// q and k as the attention slices them: strided [b, g, perGroup, s, d] views of the fused QKV
    /// output. The result is contiguous and equals the rotation of a contiguous copy.
    func testStridedViewsOfTheFusedProjection() {
        let (b, s, g, p, d) = (2, 5, 2, 3, 16)
        let qkv = randomInput([b, s, g, p + 2, d], seed: 3)
        let view = qkv.permuted([0, 2, 3, 1, 4])
        let q = view.narrowed(2, start: 0, length: p), k = view.narrowed(2, start: p, length: 1)
        XCTAssertFalse(q.isContiguous)
        let rope = RotaryEmbedding(kvChannels: d, rotaryPercent: 0.5, base: 10000)
        for t in [q, k] {
            let out = rope(t, offset: 2)
            XCTAssertEqual(out.shape, t.shape)
            XCTAssertTrue(out.isContiguous)
            XCTAssertEqual(out.floats(), rope(t.madeContiguous(), offset: 2).floats())
        }
    }

    /// Per-row positions (left-padded prompts): row b equals that row rotated alone from its offset.
    func testRowPositionsRotateEachBatchRowByItsOwnTable() {
        let rope = RotaryEmbedding(kvChannels: 16, rotaryPercent: 1, base: 10000)
        let x = randomInput([3, 2, 4, 16], seed: 4)
        let starts = [0, 3, 7]
        let out = rope(x, rowPositions: starts.map { Array($0..<$0 + 4) })
        for (row, start) in starts.enumerated() {
            let alone = rope(x.narrowed(0, start: row, length: 1), offset: start)
            XCTAssertEqual(out.narrowed(0, start: row, length: 1).floats(), alone.floats(), "row \(row)")
        }
    }

    /// The backward applies the transposed rotation: <f(x), g> = <x, f^T(g)> for any tables (here
    /// random ones, whose halves differ, so the pairing of sin_i and sin_{i+h} is checked), and
    /// autograd's gradient equals central finite differences of sum(f(x) * w).
    func testBackwardIsTheTransposeAndMatchesFiniteDifferences() {
        let (cos, sin) = (randomInput([2, 5, 6], seed: 5), randomInput([2, 5, 6], seed: 6))   // per-row tables
        var x = randomInput([2, 3, 5, 10], seed: 7)
        let w = randomInput([2, 3, 5, 10], seed: 8)
        let forward = Ops.rotaryEmbedding(x, cos: cos, sin: sin).floats()
        let transposed = Ops.rotaryEmbedding(w, cos: cos, sin: sin, backward: true).floats()
        let lhs = zip(forward, w.floats()).map { Double($0) * Double($1) }.reduce(0, +)
        let rhs = zip(x.floats(), transposed).map { Double($0) * Double($1) }.reduce(0, +)
        XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(lhs)))

        x.requiresGrad = true
        (Functional.rotaryEmbedding(x, cos: cos, sin: sin) * w).sum().backward()
        let analytic = x.grad!.floats(), base = x.floats()
        func objective(_ values: [Float]) -> Double {
            let y = Ops.rotaryEmbedding(Tensor(shape: x.shape, values: values), cos: cos, sin: sin).floats()
            return zip(y, w.floats()).map { Double($0) * Double($1) }.reduce(0, +)
        }
        let epsilon: Float = 1e-2
        for j in stride(from: 0, to: base.count, by: 7) {
            var (up, down) = (base, base)
            up[j] += epsilon
            down[j] -= epsilon
            let numeric = (objective(up) - objective(down)) / Double(2 * epsilon)
            XCTAssertEqual(Double(analytic[j]), numeric, accuracy: 1e-3 * max(1, abs(numeric)), "d/dx[\(j)]")
        }
    }

    func testGradientFlowsBackThroughTheStridedView() {
        var qkv = randomInput([1, 4, 1, 3, 8], seed: 9)
        qkv.requiresGrad = true
        let q = qkv.permute([0, 2, 3, 1, 4]).narrow(2, start: 0, length: 1)   // [1, 1, 1, 4, 8]
        let rope = RotaryEmbedding(kvChannels: 8, rotaryPercent: 1, base: 10000)
        let (cos, sin) = rope.tables(positions: Array(0..<4))
        rope(q).sum().backward()
        let expected = Ops.rotaryEmbedding(Tensor.ones([1, 1, 1, 4, 8]), cos: cos, sin: sin, backward: true).floats()
        let grad = qkv.grad!.permuted([0, 2, 3, 1, 4])
        XCTAssertEqual(grad.narrowed(2, start: 0, length: 1).floats(), expected)
        XCTAssertEqual(grad.narrowed(2, start: 1, length: 2).floats(), [Float](repeating: 0, count: 2 * 4 * 8))
    }
}
