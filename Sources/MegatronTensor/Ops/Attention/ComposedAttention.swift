/// Scaled-dot-product attention composed of batched matrix products, row reductions and elementwise ops
/// in fp32 on the operands' device, the `[b, heads, s, t]` scores materialized: the general GPU path
/// where the fused kernels do not apply (fp32, head dims they lack, unaligned rows, a given dropout
/// mask). Takes and returns what `Ops.attention` / `Ops.attentionBackward` do, with the same dropout
/// numbering (`Ops.dropout` on the contiguous probabilities), and agrees with the CPU reference up to
/// fp32 summation order.
struct ComposedAttention {
    let layout: AttentionLayout
    let causal: Bool
    let scale: Float
    let dropout: AttentionDropout?
    let masking: AttentionMasking

    /// The output in q's logical shape (laid out as `[b, s, heads, d]`) and the fp32 log-sum-exp `[b, heads, s]`.
    func forward(q: Tensor, k: Tensor, v: Tensor) -> (output: Tensor, logSumExp: Tensor) {
        let (q3, k3, v3) = (queries(q), keys(k), keys(v))
        let scores = maskedScores(q3, k3)
        var rowMax = Ops.reduce(scores, dims: [3], keepDim: true, .max)
        if let sinks = sinkLogits { rowMax = Ops.binary(rowMax, sinks, .maximum) }
        var total = Ops.reduce(Ops.unary(Ops.binary(scores, rowMax, .sub), .exp), dims: [3], keepDim: true, .sum)
        // A sink is one more logit of each row's softmax, with no value.
        if let sinks = sinkLogits { total = Ops.binary(total, Ops.unary(Ops.binary(sinks, rowMax, .sub), .exp), .add) }
        let lse = Ops.binary(rowMax, Ops.unary(total, .log), .add)
        let probabilities = dropped(Ops.unary(Ops.binary(scores, lse, .sub), .exp))
        let output = Ops.matmul(grouped(probabilities), v3)   // [b, g, p * s, d]
        let bshd = output.reshaped([layout.batch, layout.heads, layout.queries, layout.headDim]).permuted([0, 2, 1, 3])
        return (layout.outputView(of: bshd.madeContiguous().cast(to: q.dtype).madeContiguous()), lse.reshaped(layout.logSumExpShape))
    }

    /// Gradients for q, k and v (contiguous, in their shapes and dtypes). With dropout (`O = (P ∘ M s) V`):
    /// dV = (P ∘ M s)ᵀ dO, dP = (dO Vᵀ) ∘ M s, dS = P ∘ (dP − rowsum(dO ∘ O)) · scale.
    func backward(gradOutput: Tensor, q: Tensor, k: Tensor, v: Tensor, output: Tensor, logSumExp: Tensor)
        -> (gradQ: Tensor, gradK: Tensor, gradV: Tensor)
    {
        let (q3, k3, v3) = (queries(q), keys(k), keys(v))
        let (dO, o) = (queries(gradOutput), queries(output))
        let lse = logSumExp.cast(to: .float32).reshaped(layout.logSumExpShape + [1])
        let probabilities = Ops.unary(Ops.binary(maskedScores(q3, k3), lse, .sub), .exp)
        let dv = Ops.matmul(grouped(dropped(probabilities)).transposed(2, 3), dO)
        let dp = dropped(Ops.matmul(dO, v3.transposed(2, 3)).reshaped(scoresShape))
        let rowDot = Ops.reduce(Ops.binary(dO, o, .mul), dims: [3], keepDim: true, .sum).reshaped(layout.logSumExpShape + [1])
        let ds = grouped(Ops.binary(Ops.binary(probabilities, Ops.binary(dp, rowDot, .sub), .mul), Tensor(scalar: scale), .mul))
        let dq = Ops.matmul(ds, k3), dk = Ops.matmul(ds.transposed(2, 3), q3)
        return (dq.reshaped(q.shape).cast(to: q.dtype), dk.reshaped(k.shape).cast(to: k.dtype), dv.reshaped(v.shape).cast(to: v.dtype))
    }

    private var scoresShape: [Int] { [layout.batch, layout.heads, layout.queries, layout.keys] }

    /// Queries (or a tensor of their shape) as contiguous fp32 `[b, g, p * s, d]`: a group's heads share its keys.
    private func queries(_ x: Tensor) -> Tensor {
        layout.groupedQueries(x).cast(to: .float32).madeContiguous()
            .reshaped([layout.batch, layout.groups, layout.perGroup * layout.queries, layout.headDim])
    }

    /// Keys or values as fp32 `[b, g, t, d]`.
    private func keys(_ x: Tensor) -> Tensor { AttentionLayout.groupedKeys(x).cast(to: .float32) }

    /// `[b, heads, s, t]` scores or probabilities as `[b, g, p * s, t]`.
    private func grouped(_ x: Tensor) -> Tensor {
        x.reshaped([layout.batch, layout.groups, layout.perGroup * layout.queries, layout.keys])
    }

    /// `scale · q kᵀ` as `[b, heads, s, t]`, -inf where the causal mask or the window hides the key.
    private func maskedScores(_ q3: Tensor, _ k3: Tensor) -> Tensor {
        let scores = Ops.binary(Ops.matmul(q3, k3.transposed(2, 3)), Tensor(scalar: scale), .mul).reshaped(scoresShape)
        guard causal || masking.window != nil else { return scores }
        return Ops.binary(scores, hiddenKeys().to(q3.device), .add)
    }

    /// The additive `[s, t]` mask: 0 where query `i` (at key position `i + t - s`) sees key `j`, else -inf.
    private func hiddenKeys() -> Tensor {
        let (s, t, offset) = (layout.queries, layout.keys, layout.causalOffset)
        let values = (0..<s * t).map { index -> Float in
            let (i, j) = index.quotientAndRemainder(dividingBy: t)
            let afterQuery = causal && j > i + offset
            let beforeWindow = masking.window.map { j < i + offset - $0 } ?? false
            return afterQuery || beforeWindow ? -.infinity : 0
        }
        return Tensor(shape: [s, t], values: values)
    }

    /// The sink logits as `[1, heads, 1, 1]`, nil without sinks.
    private var sinkLogits: Tensor? { masking.sinks.map { $0.reshaped([1, layout.heads, 1, 1]) } }

    /// `[b, heads, s, t]` probabilities (or their gradient) with the dropout mask applied and the kept ones scaled.
    private func dropped(_ x: Tensor) -> Tensor {
        guard let dropout else { return x }
        if let draw = dropout.philox { return Ops.dropout(x.madeContiguous(), p: dropout.probability, seed: draw.seed, offset: draw.offset) }
        let factors = (0..<x.count).map { dropout.keeps($0) ? dropout.scale : 0 }
        return Ops.binary(x, Tensor(shape: x.shape, values: factors).to(x.device), .mul)
    }
}
