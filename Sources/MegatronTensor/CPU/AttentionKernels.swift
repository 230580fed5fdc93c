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
    ///
    ///     let (o, lse) = Ops.attention(q: q, k: k, v: v, causal: true, scale: 1 / 8)
    public static func attention(q: Tensor, k: Tensor, v: Tensor, causal: Bool, scale: Float) -> (output: Tensor, logSumExp: Tensor) {
        let layout = AttentionLayout(q: q, k: k, v: v)
        precondition(q.dtype == k.dtype && q.dtype == v.dtype, "attention: q, k, v dtypes differ (\(q.dtype), \(k.dtype), \(v.dtype))")
        if let device = cudaDevice(q, k, v, op: "attention") {
            if let r = CUDAAttention.forward(q: q, k: k, v: v, layout: layout, causal: causal, scale: scale) { return r }
            // What the fused kernels do not take (fp32, head dims other than 64 and 128, unaligned rows):
            // the CPU implementation on host copies (correct, not fast).
            let r = attention(q: q.to(.cpu), k: k.to(.cpu), v: v.to(.cpu), causal: causal, scale: scale)
            return (r.output.to(device), r.logSumExp.to(device))
        }
        let math = AttentionMath(layout: layout, causal: causal, scale: scale,
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
    /// gradients sum over the query heads of their group.
    public static func attentionBackward(gradOutput: Tensor, q: Tensor, k: Tensor, v: Tensor, output: Tensor, logSumExp: Tensor,
                                         causal: Bool, scale: Float) -> (gradQ: Tensor, gradK: Tensor, gradV: Tensor) {
        let layout = AttentionLayout(q: q, k: k, v: v)
        precondition(gradOutput.shape == layout.queryShape && output.shape == layout.queryShape,
                     "attentionBackward: output \(output.shape) and its gradient \(gradOutput.shape) must have q's shape \(layout.queryShape)")
        precondition(logSumExp.shape == layout.logSumExpShape, "attentionBackward: logSumExp \(logSumExp.shape) is not \(layout.logSumExpShape)")
        if let device = cudaDevice(gradOutput, q, k, v, output, logSumExp, op: "attentionBackward") {
            if let r = CUDAAttention.backward(gradOutput: gradOutput, q: q, k: k, v: v, output: output, logSumExp: logSumExp,
                                              layout: layout, causal: causal, scale: scale) {
                return r
            }
            let r = attentionBackward(gradOutput: gradOutput.to(.cpu), q: q.to(.cpu), k: k.to(.cpu), v: v.to(.cpu),
                                      output: output.to(.cpu), logSumExp: logSumExp.to(.cpu), causal: causal, scale: scale)
            return (r.gradQ.to(device), r.gradK.to(device), r.gradV.to(device))
        }
        let math = AttentionMath(layout: layout, causal: causal, scale: scale,
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
/// k and v `[b, g, t, d]`. Scores are computed one query row at a time, never all at once.
struct AttentionMath {
    let layout: AttentionLayout
    let causal: Bool
    let scale: Float
    let q: [Float], k: [Float], v: [Float]

    /// Keys query row `i` sees.
    func visibleKeys(_ i: Int) -> Int { causal ? min(layout.keys, i + layout.causalOffset + 1) : layout.keys }

    /// Scaled scores of query row `row` (an index into q's rows) against key/value head `kv`.
    func scores(row: Int, kv: Int, count: Int) -> [Float] {
        let d = layout.headDim
        return (0..<count).map { j in
            var dot: Float = 0
            for c in 0..<d { dot += q[row * d + c] * k[(kv * layout.keys + j) * d + c] }
            return dot * scale
        }
    }

    /// Writes the output (`[b, s, heads, d]`) and each row's log-sum-exp (`[b, heads, s]`).
    func forward(output: UnsafeMutableBufferPointer<Float>, logSumExp: UnsafeMutableBufferPointer<Float>) {
        let (s, d, heads) = (layout.queries, layout.headDim, layout.heads)
        Ops.parallelRows(layout.batch * heads * s, layout.keys * d) { row in
            let (bh, i) = row.quotientAndRemainder(dividingBy: s)
            let (b, h) = bh.quotientAndRemainder(dividingBy: heads)
            let kv = b * layout.groups + h / layout.perGroup
            let count = visibleKeys(i)
            let x = scores(row: row, kv: kv, count: count)
            let lse = x.withUnsafeBufferPointer { Ops.logSumExp($0.baseAddress!, count) }
            logSumExp[row] = lse
            let o = output.baseAddress! + ((b * s + i) * heads + h) * d
            for j in 0..<count {
                let p = Foundation.exp(x[j] - lse)
                for c in 0..<d { o[c] += p * v[(kv * layout.keys + j) * d + c] }
            }
        }
    }

    /// dQ in the grouped query layout, dK and dV `[b, g, t, d]`.
    func backward(gradOutput dO: [Float], output: [Float], logSumExp: [Float]) -> (dq: [Float], dk: [Float], dv: [Float]) {
        let (s, t, d, p) = (layout.queries, layout.keys, layout.headDim, layout.perGroup)
        var dq = [Float](repeating: 0, count: q.count)
        var dk = [Float](repeating: 0, count: k.count), dv = [Float](repeating: 0, count: v.count)
        // One task per key/value head: it owns that head's dK and dV rows and its query heads' dQ rows.
        dq.withUnsafeMutableBufferPointer { dq in
            dk.withUnsafeMutableBufferPointer { dk in
                dv.withUnsafeMutableBufferPointer { dv in
                    let (dqBase, dkBase, dvBase) = (dq.baseAddress!, dk.baseAddress!, dv.baseAddress!)
                    Ops.parallelRows(layout.batch * layout.groups, p * s * t * d) { kv in
                        for row in kv * p * s..<(kv + 1) * p * s {
                            let i = row % s
                            let count = visibleKeys(i)
                            let x = scores(row: row, kv: kv, count: count)
                            var rowDot: Float = 0   // D = rowsum(dO * O)
                            for c in 0..<d { rowDot += dO[row * d + c] * output[row * d + c] }
                            for j in 0..<count {
                                let prob = Foundation.exp(x[j] - logSumExp[row])
                                let key = (kv * t + j) * d
                                var dp: Float = 0
                                for c in 0..<d {
                                    dp += dO[row * d + c] * v[key + c]
                                    dvBase[key + c] += prob * dO[row * d + c]
                                }
                                let ds = prob * (dp - rowDot) * scale
                                for c in 0..<d {
                                    dqBase[row * d + c] += ds * k[key + c]
                                    dkBase[key + c] += ds * q[row * d + c]
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dq, dk, dv)
    }
}
