import Foundation
import XCTest
import MegatronTensor
@testable import MegatronAutograd

/// gpt-oss's attention in the attention primitive (CPU reference): a sliding window and sink logits, against
/// attention spelled out with materialized scores (the window a mask, the sink a last softmax column that is
/// dropped, Megatron's `SoftmaxOne`), and gradients, the sinks' included, by finite differences.
final class AttentionMaskingTests: XCTestCase {
    /// q grouped [b, g, p, s, d], k and v [b, g, 1, t, d]; sinks [g * p].
    func materialized(_ q: Tensor, _ k: Tensor, _ v: Tensor, window: Int?, sinks: Tensor?, scale: Float) -> Tensor {
        let (b, g, p, s, t) = (q.size(0), q.size(1), q.size(2), q.size(3), k.size(3))
        let hidden = (0..<(s * t)).map { index -> Int in
            let (i, j) = (index / t, index % t), position = i + t - s
            return j > position || window.map { j < position - $0 } ?? false ? 1 : 0
        }
        var scores = (q.matmul(k.transpose(-1, -2)) * scale).maskedFill(Tensor(shape: [s, t], ints: hidden, dtype: .bool), -.infinity)
        guard let sinks else { return Functional.softmax(scores).matmul(v) }
        scores = concat([scores, sinks.reshape([1, g, p, 1, 1]).expand(to: [b, g, p, s, 1])], dim: 4)
        return Functional.softmax(scores).narrow(4, start: 0, length: t).matmul(v)
    }

    func testWindowAndSinksMatchMaterializedAttention() {
        for (s, t, window) in [(6, 6, 2), (5, 8, 3), (6, 6, 0), (4, 4, 9)] {
            let q = sample([2, 2, 2, s, 4], seed: 1), k = sample([2, 2, 1, t, 4], seed: 2), v = sample([2, 2, 1, t, 4], seed: 3)
            let sinks = sample([4], seed: 4, low: -2, high: 2)
            for (w, sink) in [(window, sinks), (window, nil), (nil, sinks)] as [(Int?, Tensor?)] {
                let fused = Functional.scaledDotProductAttention(q, k, v, scale: 0.5, window: w, sinks: sink)
                let reference = materialized(q, k, v, window: w, sinks: sink, scale: 0.5)
                for (x, y) in zip(fused.floats(), reference.floats()) {
                    XCTAssertEqual(x, y, accuracy: 1e-5, "s \(s) t \(t) window \(String(describing: w)) sinks \(sink != nil)")
                }
            }
        }
    }

    /// A window of 0 sees only the query's own key; a very negative sink leaves attention unchanged, and the
    /// log-sum-exp counts the sink.
    func testEdgeCases() {
        let q = sample([1, 1, 1, 4, 4], seed: 5), k = sample([1, 1, 1, 4, 4], seed: 6), v = sample([1, 1, 1, 4, 4], seed: 7)
        let own = Functional.scaledDotProductAttention(q, k, v, window: 0)
        for (x, y) in zip(own.floats(), v.floats()) { XCTAssertEqual(x, y, accuracy: 1e-6, "window 0: each query sees its own key only") }
        let drowned = Functional.scaledDotProductAttention(q, k, v, sinks: Tensor(shape: [1], values: [-1e4]))
        let plain = Functional.scaledDotProductAttention(q, k, v)
        for (x, y) in zip(drowned.floats(), plain.floats()) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        let sinks = Tensor(shape: [1], values: [0.7])
        let withSink = Ops.attention(q: q, k: k, v: v, causal: true, scale: 0.5, masking: AttentionMasking(sinks: sinks))
        let without = Ops.attention(q: q, k: k, v: v, causal: true, scale: 0.5)
        for (a, b) in zip(withSink.logSumExp.floats(), without.logSumExp.floats()) {
            XCTAssertEqual(a, Foundation.log(Foundation.exp(b) + Foundation.exp(0.7)), accuracy: 1e-5)
        }
    }

    func testGradientsWithWindowAndSinksByFiniteDifferences() {
        let q = sample([1, 2, 2, 5, 4], seed: 8, low: -1, high: 1)
        let k = sample([1, 2, 1, 6, 4], seed: 9, low: -1, high: 1), v = sample([1, 2, 1, 6, 4], seed: 10, low: -1, high: 1)
        let sinks = sample([4], seed: 11, low: -1, high: 1)
        checkGradients([q, k, v, sinks]) {
            Functional.scaledDotProductAttention($0[0], $0[1], $0[2], window: 2, sinks: $0[3])
        }
        checkGradients([q, k, v, sinks]) { Functional.scaledDotProductAttention($0[0], $0[1], $0[2], sinks: $0[3]) }
        checkGradients([q, k, v]) { Functional.scaledDotProductAttention($0[0], $0[1], $0[2], window: 1) }
    }

    /// The sink gradient is -Σ P_sink · rowsum(dO ∘ O): checked against the materialized path's autograd.
    func testSinkGradientMatchesMaterializedAutograd() {
        let q = sample([2, 2, 2, 6, 4], seed: 12), k = sample([2, 2, 1, 6, 4], seed: 13), v = sample([2, 2, 1, 6, 4], seed: 14)
        var fusedSinks = sample([4], seed: 15, low: -1, high: 1), referenceSinks = fusedSinks
        fusedSinks.requiresGrad = true
        referenceSinks.requiresGrad = true
        let weights = sample([2, 2, 2, 6, 4], seed: 16)
        (Functional.scaledDotProductAttention(q, k, v, window: 3, sinks: fusedSinks) * weights).sum().backward()
        (materialized(q, k, v, window: 3, sinks: referenceSinks, scale: 0.5) * weights).sum().backward()
        for (x, y) in zip(fusedSinks.grad!.floats(), referenceSinks.grad!.floats()) { XCTAssertEqual(x, y, accuracy: 1e-4) }
    }
}
