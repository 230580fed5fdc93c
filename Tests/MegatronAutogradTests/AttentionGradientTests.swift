import XCTest
import MegatronTensor
@testable import MegatronAutograd
import MegatronTestSupport

/// The attention primitive (CPU reference) against attention spelled out with materialized scores.
final class AttentionGradientTests: XCTestCase {
    /// softmax(q kᵀ * scale + mask) v with q grouped [b, g, p, s, d] and k, v [b, g, 1, t, d].
    func materialized(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, scale: Float) -> Tensor {
        let s = q.size(-2), t = k.size(-2)
        var scores = q.matmul(k.transpose(-1, -2)) * scale
        if causal {
            let future = Tensor(shape: [s, t], ints: (0..<(s * t)).map { $0 % t > $0 / t + (t - s) ? 1 : 0 }, dtype: .bool)
            scores = scores.maskedFill(future, -.infinity)
        }
        return Functional.softmax(scores).matmul(v)
    }

    func testForwardMatchesMaterializedAttentionWithGroupsCausalAndCache() {
        // 2 key/value heads, 3 query heads each; 5 queries are the last of 7 positions (a KV cache).
        for (s, t, causal) in [(5, 7, true), (5, 5, true), (4, 6, false), (1, 3, true)] {
            let q = sample([2, 2, 3, s, 4], seed: 1), k = sample([2, 2, 1, t, 4], seed: 2), v = sample([2, 2, 1, t, 4], seed: 3)
            let fused = Functional.scaledDotProductAttention(q, k, v, causal: causal, scale: 0.4)
            assertClose(fused, materialized(q, k, v, causal: causal, scale: 0.4), absolute: 1e-5, "s \(s) t \(t) causal \(causal)")
        }
    }

    func testQueriesAsHeadsAndOutputLaidOutForTheProjection() {
        let (b, heads, kvHeads, s, d) = (2, 4, 2, 3, 8)
        let q = sample([b, heads, s, d], seed: 4), k = sample([b, kvHeads, s, d], seed: 5), v = sample([b, kvHeads, s, d], seed: 6)
        let o = Functional.scaledDotProductAttention(q, k, v, causal: true)
        XCTAssertEqual(o.shape, [b, heads, s, d])
        XCTAssertEqual(o.strides, [s * heads * d, d, heads * d, 1], "memory is [b, s, heads, d]")
        XCTAssertTrue(o.permuted([0, 2, 1, 3]).isContiguous)
        let grouped = materialized(q.reshaped([b, kvHeads, 2, s, d]), k.unsqueezed(2), v.unsqueezed(2), causal: true,
                                   scale: 1 / Float(d).squareRoot())
        assertClose(o, grouped.reshaped([b, heads, s, d]), absolute: 1e-5, "4-D queries")
        // The first query sees only the first key: its output is that key's value.
        XCTAssertEqual(Array(o.floats()[0..<d]), Array(v.floats()[0..<d]))
    }

    /// Strided views (as sliced out of a fused QKV projection) give the same result as copies.
    func testStridedInputs() {
        let (b, g, p, s, d) = (2, 2, 2, 5, 4)
        let qkv = sample([b, s, g, p + 2, d], seed: 7).permuted([0, 2, 3, 1, 4])
        let q = qkv.narrowed(2, start: 0, length: p), k = qkv.narrowed(2, start: p, length: 1), v = qkv.narrowed(2, start: p + 1, length: 1)
        XCTAssertFalse(q.isContiguous)
        assertClose(Functional.scaledDotProductAttention(q, k, v),
                    Functional.scaledDotProductAttention(q.madeContiguous(), k.madeContiguous(), v.madeContiguous()), absolute: 1e-5, "strided")
    }

    func testGradientsByFiniteDifferences() {
        let q = sample([1, 2, 2, 3, 4], seed: 8, low: -1, high: 1)
        let k = sample([1, 2, 1, 4, 4], seed: 9, low: -1, high: 1), v = sample([1, 2, 1, 4, 4], seed: 10, low: -1, high: 1)
        checkGradients([q, k, v]) { Functional.scaledDotProductAttention($0[0], $0[1], $0[2], causal: true) }
        checkGradients([q, k, v]) { Functional.scaledDotProductAttention($0[0], $0[1], $0[2], causal: false, scale: 0.7) }
    }

    func testGradientsMatchMaterializedAttention() {
        for causal in [true, false] {
            var leaves = [sample([2, 2, 3, 6, 8], seed: 11), sample([2, 2, 1, 6, 8], seed: 12), sample([2, 2, 1, 6, 8], seed: 13)]
            var reference = leaves.map { $0.detached() }
            for i in 0..<3 {
                leaves[i].requiresGrad = true
                reference[i].requiresGrad = true
            }
            let weights = sample([2, 2, 3, 6, 8], seed: 14)
            (Functional.scaledDotProductAttention(leaves[0], leaves[1], leaves[2], causal: causal) * weights).sum().backward()
            (materialized(reference[0], reference[1], reference[2], causal: causal, scale: 1 / Float(8).squareRoot()) * weights)
                .sum().backward()
            for i in 0..<3 { assertClose(leaves[i].grad!, reference[i].grad!, absolute: 1e-4, "grad \(i) causal \(causal)") }
        }
    }

    func testBackwardOpTakesAStridedOutputGradient() {
        let q = sample([1, 2, 3, 4], seed: 15), k = sample([1, 1, 3, 4], seed: 16), v = sample([1, 1, 3, 4], seed: 17)
        let r = Ops.attention(q: q, k: k, v: v, causal: true, scale: 0.5)
        let g = sample([1, 3, 2, 4], seed: 18)   // [b, s, heads, d] memory, viewed as [b, heads, s, d]
        let strided = Ops.attentionBackward(gradOutput: g.permuted([0, 2, 1, 3]), q: q, k: k, v: v, output: r.output,
                                            logSumExp: r.logSumExp, causal: true, scale: 0.5)
        let copied = Ops.attentionBackward(gradOutput: g.permuted([0, 2, 1, 3]).madeContiguous(), q: q, k: k, v: v, output: r.output,
                                           logSumExp: r.logSumExp, causal: true, scale: 0.5)
        assertClose(strided.gradQ, copied.gradQ, absolute: 1e-5, "dq")
        assertClose(strided.gradK, copied.gradK, absolute: 1e-5, "dk")
        XCTAssertEqual(strided.gradK.shape, [1, 1, 3, 4])
        // Row log-sum-exp of the first query: it sees one key, so lse = its scaled score.
        let qk = zip(q.floats()[0..<4], k.floats()[0..<4]).map { $0 * $1 }.reduce(0, +) * 0.5
        XCTAssertEqual(r.logSumExp.floats()[0], qk, accuracy: 1e-5)
    }

    // MARK: Dropout inside attention

    /// The fused primitive's dropout drops exactly what dropout on the materialized probabilities drops
    /// (same generator, same draw): outputs and gradients equal, grouped heads and a head dim of 12.
    func testDropoutMatchesDropoutOnMaterializedProbabilities() {
        let (b, g, p, s, d) = (2, 2, 3, 7, 12)
        var leaves = [sample([b, g, p, s, d], seed: 21), sample([b, g, 1, s, d], seed: 22), sample([b, g, 1, s, d], seed: 23)]
        var reference = leaves.map { $0.detached() }
        for i in 0..<3 {
            leaves[i].requiresGrad = true
            reference[i].requiresGrad = true
        }
        let scale = 1 / Float(d).squareRoot(), weights = sample([b, g, p, s, d], seed: 24)
        let fused = Functional.scaledDotProductAttention(leaves[0], leaves[1], leaves[2], causal: true,
                                                         dropout: (0.3, PhiloxGenerator(seed: 5, offset: 9)))
        let scores = reference[0].matmul(reference[1].transpose(-1, -2)) * scale
        let future = Tensor(shape: [s, s], ints: (0..<(s * s)).map { $0 % s > $0 / s ? 1 : 0 }, dtype: .bool)
        let probabilities = Functional.dropout(Functional.softmax(scores.maskedFill(future, -.infinity)), p: 0.3,
                                               generator: PhiloxGenerator(seed: 5, offset: 9))
        let materialized = probabilities.matmul(reference[2])
        assertClose(fused, materialized, absolute: 1e-5, "dropout output")
        (fused * weights).sum().backward()
        (materialized * weights).sum().backward()
        for i in 0..<3 { assertClose(leaves[i].grad!, reference[i].grad!, absolute: 1e-4, "dropout grad \(i)") }
        // Something was dropped: without dropout the output differs.
        let plain = Functional.scaledDotProductAttention(leaves[0].detached(), leaves[1].detached(), leaves[2].detached())
        XCTAssertGreaterThan(zip(plain.floats(), fused.floats()).map { abs($0 - $1) }.max()!, 0.1)
    }

    /// The mask numbering: index ((b * heads + h) * s + i) * t + j is kept iff Philox.fillUniform's number
    /// of that index is at least p, the mask `Ops.dropout` draws on a contiguous tensor.
    func testDropoutMaskIsOpsDropoutsMaskOfTheProbabilityIndex() {
        let dropout = AttentionDropout(probability: 0.25, seed: 77, offset: 4)
        let count = 4 * 3 * 5 * 6
        let dropped = Ops.dropout(Tensor.ones([count]), p: 0.25, seed: 77, offset: 4).floats()
        XCTAssertEqual((0..<count).map { dropout.keeps($0) }, dropped.map { $0 != 0 })
        XCTAssertEqual(dropout.scale, 1 / (1 - 0.25))
        let kept = (0..<count).filter { dropout.keeps($0) }.count
        XCTAssertTrue((Double(count) * 0.6...Double(count) * 0.9).contains(Double(kept)), "\(kept) of \(count) kept at p 0.25")
        // A given mask is taken as it is.
        let given = AttentionDropout(probability: 0.5, keeping: [true, false, true])
        XCTAssertEqual((0..<3).map { given.keeps($0) }, [true, false, true])
        XCTAssertNil(given.philox)
    }

    /// Gradients of attention with dropout (a fixed draw, so the function is deterministic) against
    /// central differences, for any head dim (5 here), causal and not, with a cache offset.
    func testDropoutGradientsByFiniteDifferences() {
        let q = sample([1, 2, 2, 3, 5], seed: 25, low: -1, high: 1)
        let k = sample([1, 2, 1, 4, 5], seed: 26, low: -1, high: 1), v = sample([1, 2, 1, 4, 5], seed: 27, low: -1, high: 1)
        for causal in [true, false] {
            checkGradients([q, k, v]) {
                Functional.scaledDotProductAttention($0[0], $0[1], $0[2], causal: causal,
                                                     dropout: (0.4, PhiloxGenerator(seed: 3, offset: 1)))
            }
        }
    }
}
