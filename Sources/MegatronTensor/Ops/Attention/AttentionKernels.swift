import Foundation

extension Ops {
    /// Scaled-dot-product attention `softmax(q kᵀ * scale + mask) v` without keeping the scores:
    /// the reference the fused GPU kernels are tested against, and what CPU tensors run.
    ///
    /// Shapes and layouts are `AttentionLayout`'s: q `[b, heads, s, d]` (or grouped
    /// `[b, groups, perGroup, s, d]`), k and v `[b, kvHeads, t, d]`, any strides. With `causal`, query
    /// `i` sees keys `0...i + (t - s)` (the queries are the last `s` key positions, as with a KV cache).
    /// Returns the output in q's logical shape (laid out in memory as `[b, s, heads, d]`) and the
    /// fp32 log-sum-exp of each row's scaled scores, `[b, heads, s]`, for the backward pass.
    /// With `dropout`, the probabilities are dropped before their product with v (`AttentionDropout`
    /// says which); the log-sum-exp is that of the undropped scores.
    ///
    /// `masking` narrows what each query sees to a sliding window of keys and adds one sink logit per
    /// head to every row's softmax (`AttentionMasking`); the log-sum-exp then counts the sink.
    ///
    ///     let (o, lse) = Ops.attention(q: q, k: k, v: v, causal: true, scale: 1 / 8)
    public static func attention(q: Tensor, k: Tensor, v: Tensor, causal: Bool, scale: Float,
                                 dropout: AttentionDropout? = nil,
                                 masking: AttentionMasking = .none) -> (output: Tensor, logSumExp: Tensor) {
        let layout = AttentionLayout(q: q, k: k, v: v)
        precondition(q.dtype == k.dtype && q.dtype == v.dtype, "attention: q, k, v dtypes differ (\(q.dtype), \(k.dtype), \(v.dtype))")
        masking.check(layout, causal: causal)
        if cudaDevice(q, k, v, op: "attention") != nil {
            if let r = CUDAAttention.forward(q: q, k: k, v: v, layout: layout, causal: causal, scale: scale, dropout: dropout,
                                             masking: masking) {
                return r
            }
            // What the fused kernels do not take (fp32, head dims that are not multiples of 8 up to 256,
            // unaligned rows, a given dropout mask): the general path on the device.
            return ComposedAttention(layout: layout, causal: causal, scale: scale, dropout: dropout, masking: masking)
                .forward(q: q, k: k, v: v)
        }
        let math = AttentionMath(layout: layout, causal: causal, scale: scale, dropout: dropout, masking: masking,
                                 q: layout.groupedQueries(q).floats(), k: AttentionLayout.groupedKeys(k).floats(),
                                 v: AttentionLayout.groupedKeys(v).floats())
        var lse = [Float](repeating: 0, count: layout.batch * layout.heads * layout.queries)
        let bshd = Tensor.computed(shape: [layout.batch, layout.queries, layout.heads, layout.headDim], dtype: q.dtype) { out in
            lse.withUnsafeMutableBufferPointer { lse in math.forward(output: out, logSumExp: lse) }
        }
        return (layout.outputView(of: bshd), Tensor(shape: layout.logSumExpShape, values: lse))
    }

    /// Gradients of `attention` for q, k and v (contiguous, in the shapes and dtype given), from the
    /// forward's `output` and `logSumExp` and the output's gradient (any strides). Key/value
    /// gradients sum over the query heads of their group. `dropout` and `masking` must be the forward's
    /// (the sinks are in the log-sum-exp; their own gradient is `attentionSinkGradient`).
    public static func attentionBackward(gradOutput: Tensor, q: Tensor, k: Tensor, v: Tensor, output: Tensor, logSumExp: Tensor,
                                         causal: Bool, scale: Float, dropout: AttentionDropout? = nil,
                                         masking: AttentionMasking = .none) -> (gradQ: Tensor, gradK: Tensor, gradV: Tensor) {
        let layout = AttentionLayout(q: q, k: k, v: v)
        masking.check(layout, causal: causal)
        precondition(gradOutput.shape == layout.queryShape && output.shape == layout.queryShape,
                     "attentionBackward: output \(output.shape) and its gradient \(gradOutput.shape) must have q's shape \(layout.queryShape)")
        precondition(logSumExp.shape == layout.logSumExpShape, "attentionBackward: logSumExp \(logSumExp.shape) is not \(layout.logSumExpShape)")
        if cudaDevice(gradOutput, q, k, v, output, logSumExp, op: "attentionBackward") != nil {
            if let r = CUDAAttention.backward(gradOutput: gradOutput, q: q, k: k, v: v, output: output, logSumExp: logSumExp,
                                              layout: layout, causal: causal, scale: scale, dropout: dropout, masking: masking) {
                return r
            }
            return ComposedAttention(layout: layout, causal: causal, scale: scale, dropout: dropout, masking: masking)
                .backward(gradOutput: gradOutput, q: q, k: k, v: v, output: output, logSumExp: logSumExp)
        }
        let math = AttentionMath(layout: layout, causal: causal, scale: scale, dropout: dropout, masking: masking,
                                 q: layout.groupedQueries(q).floats(), k: AttentionLayout.groupedKeys(k).floats(),
                                 v: AttentionLayout.groupedKeys(v).floats())
        let grouped = math.backward(gradOutput: layout.groupedQueries(gradOutput).floats(),
                                    output: layout.groupedQueries(output).floats(), logSumExp: logSumExp.floats())
        func tensor(_ values: [Float], like x: Tensor) -> Tensor {
            Tensor(shape: x.shape, values: values).cast(to: x.dtype)
        }
        return (tensor(grouped.dq, like: q), tensor(grouped.dk, like: k), tensor(grouped.dv, like: v))
    }
}

/// The attention arithmetic on contiguous fp32 operands in the grouped layout: q `[b, g, p, s, d]`,
/// k and v `[b, g, t, d]`. Scores are computed one query row (or one key) at a time, never all at once.
/// Query rows are numbered `[b, heads, s]` (the grouped layout's order), so with dropout the
/// probability of row `row` and key `j` has the mask index `row * t + j`.
struct AttentionMath {
    let layout: AttentionLayout
    let causal: Bool
    let scale: Float
    let dropout: AttentionDropout?
    let window: Int?
    /// One sink logit per query head (`AttentionMasking.sinks`), nil without.
    let sinks: [Float]?
    let q: [Float], k: [Float], v: [Float]

    init(layout: AttentionLayout, causal: Bool, scale: Float, dropout: AttentionDropout?, masking: AttentionMasking,
         q: [Float], k: [Float], v: [Float]) {
        (self.layout, self.causal, self.scale, self.dropout, self.q, self.k, self.v) = (layout, causal, scale, dropout, q, k, v)
        window = masking.window
        sinks = masking.sinks?.floats()
    }

    /// What the probability of query row `row` and key `j` is multiplied by before its product with v:
    /// 1 without dropout, else 0 (dropped) or `1 / (1 - p)` (kept).
    func dropoutFactor(_ row: Int, _ j: Int) -> Float {
        guard let dropout else { return 1 }
        return dropout.keeps(row * layout.keys + j) ? dropout.scale : 0
    }

    /// One past the last key query row `i` sees.
    func visibleKeys(_ i: Int) -> Int { causal ? min(layout.keys, i + layout.causalOffset + 1) : layout.keys }

    /// The first key query row `i` sees: the window's left edge, 0 without a window.
    func firstKey(_ i: Int) -> Int { window.map { max(0, i + layout.causalOffset - $0) } ?? 0 }

    /// The query rows that see key `j`.
    func queries(seeing j: Int) -> Range<Int> {
        let first = causal ? max(0, j - layout.causalOffset) : 0
        let end = window.map { min(layout.queries, max(first, j - layout.causalOffset + $0 + 1)) } ?? layout.queries
        return first..<end
    }

    /// The key/value head of query row `row` (an index into q's rows).
    func keyHead(ofRow row: Int) -> Int { row / (layout.perGroup * layout.queries) }

    /// Writes the output (`[b, s, heads, d]`) and each row's log-sum-exp (`[b, heads, s]`).
    func forward(output: UnsafeMutableBufferPointer<Float>, logSumExp: UnsafeMutableBufferPointer<Float>) {
        let (s, t, d, heads) = (layout.queries, layout.keys, layout.headDim, layout.heads)
        q.withUnsafeBufferPointer { q in k.withUnsafeBufferPointer { k in v.withUnsafeBufferPointer { v in
            Ops.parallelRows(layout.batch * heads * s, t * d) { row in
                let (bh, i) = row.quotientAndRemainder(dividingBy: s)
                let (b, h) = bh.quotientAndRemainder(dividingBy: heads)
                let kv = keyHead(ofRow: row), keys = firstKey(i)..<visibleKeys(i)
                let qRow = q.baseAddress! + row * d
                // The sink is one more logit of the row's softmax, with no value: it only takes probability.
                let x = keys.map { j in Self.dot(qRow, k.baseAddress! + (kv * t + j) * d, d) * scale } + (sinks.map { [$0[h]] } ?? [])
                let lse = x.withUnsafeBufferPointer { Ops.logSumExp($0.baseAddress!, x.count) }
                logSumExp[row] = lse
                let o = output.baseAddress! + ((b * s + i) * heads + h) * d
                for (n, j) in keys.enumerated() {
                    let p = Foundation.exp(x[n] - lse) * dropoutFactor(row, j), value = v.baseAddress! + (kv * t + j) * d
                    for c in 0..<d { o[c] += p * value[c] }
                }
            }
        } } }
    }

    /// dQ in the grouped query layout, dK and dV `[b, g, t, d]`: one parallel pass over query rows
    /// for dQ, one over keys for dK and dV (each recomputes the probabilities it needs), so every
    /// gradient row is summed by one task in a fixed order. With dropout (`O = (P ∘ M s) V`, s the
    /// dropout scale): dV = (P ∘ M s)ᵀ dO, dP = (dO Vᵀ) ∘ M s, dS = P ∘ (dP − rowsum(dO ∘ O)).
    func backward(gradOutput: [Float], output: [Float], logSumExp: [Float]) -> (dq: [Float], dk: [Float], dv: [Float]) {
        let (s, t, d, p) = (layout.queries, layout.keys, layout.headDim, layout.perGroup)
        let rowDot = (0..<q.count / d).map { row in   // D = rowsum(dO * O)
            (0..<d).reduce(Float(0)) { $0 + gradOutput[row * d + $1] * output[row * d + $1] }
        }
        var dq = [Float](repeating: 0, count: q.count)
        var dk = [Float](repeating: 0, count: k.count), dv = [Float](repeating: 0, count: v.count)
        q.withUnsafeBufferPointer { q in k.withUnsafeBufferPointer { k in v.withUnsafeBufferPointer { v in
        gradOutput.withUnsafeBufferPointer { dO in
            let (qb, kb, vb, gb) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, dO.baseAddress!)
            /// dS of query row `row` and key `j` of head `kv`, and the probability P after dropout.
            func gradScore(_ row: Int, _ kv: Int, _ j: Int) -> (ds: Float, p: Float) {
                let key = (kv * t + j) * d, factor = dropoutFactor(row, j)
                let prob = Foundation.exp(Self.dot(qb + row * d, kb + key, d) * scale - logSumExp[row])
                return (prob * (Self.dot(gb + row * d, vb + key, d) * factor - rowDot[row]) * scale, prob * factor)
            }
            dq.withUnsafeMutableBufferPointer { dq in
                Ops.parallelRows(q.count / d, t * d) { row in
                    let kv = keyHead(ofRow: row), out = dq.baseAddress! + row * d
                    for j in firstKey(row % s)..<visibleKeys(row % s) {
                        let ds = gradScore(row, kv, j).ds, key = kb + (kv * t + j) * d
                        for c in 0..<d { out[c] += ds * key[c] }
                    }
                }
            }
            dk.withUnsafeMutableBufferPointer { dk in dv.withUnsafeMutableBufferPointer { dv in
                Ops.parallelRows(k.count / d, p * s * d) { keyRow in
                    let (kv, j) = keyRow.quotientAndRemainder(dividingBy: t)
                    let (dkRow, dvRow) = (dk.baseAddress! + keyRow * d, dv.baseAddress! + keyRow * d)
                    for head in 0..<p {
                        for i in queries(seeing: j) {
                            let row = (kv * p + head) * s + i
                            let (ds, prob) = gradScore(row, kv, j)
                            for c in 0..<d {
                                dkRow[c] += ds * qb[row * d + c]
                                dvRow[c] += prob * gb[row * d + c]
                            }
                        }
                    }
                }
            } }
        } } } }
        return (dq, dk, dv)
    }

    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var sum: Float = 0
        for c in 0..<n { sum += a[c] * b[c] }
        return sum
    }
}
