import MegatronTensor

extension Functional {
    /// `x + residual` and its layer norm: the residual add of a pre-norm transformer fused into the
    /// norm that follows it. Forward writes both in one pass; backward gives x and residual the norm's
    /// input gradient plus the gradient that reached `sum` directly, also in one pass (on the GPU).
    /// Same values and gradients as `x + residual` followed by `layerNorm`.
    ///
    /// ```swift
    /// let (h, normed) = Functional.addLayerNorm(x, residual: attentionOut, weight: gamma, bias: beta)
    /// let out = h + mlp(normed)
    /// ```
    public static func addLayerNorm(_ x: Tensor, residual: Tensor, weight: Tensor?, bias: Tensor?,
                                    epsilon: Float = 1e-5) -> (sum: Tensor, normed: Tensor) {
        let ws = weight?.detached()
        let r = Ops.addLayerNorm(x.detached(), residual: residual.detached(), weight: ws, bias: bias?.detached(),
                                 epsilon: epsilon)
        let inputs = [x, residual] + [weight, bias].compactMap { $0 }
        let outputs = record("addLayerNorm", inputs: inputs, outputs: [r.sum, r.output]) { g in
            let b = Ops.addLayerNormBackward(g[1], gradSum: g[0], sum: r.sum, mean: r.mean, rstd: r.rstd, weight: ws)
            return [b.gradInput, b.gradInput] + (weight == nil ? [] : [b.gradWeight]) + (bias == nil ? [] : [b.gradBias])
        }
        return (outputs[0], outputs[1])
    }

    /// `x + residual` and its RMS norm, fused as `addLayerNorm`.
    public static func addRMSNorm(_ x: Tensor, residual: Tensor, weight: Tensor?,
                                  epsilon: Float = 1e-5) -> (sum: Tensor, normed: Tensor) {
        let ws = weight?.detached()
        let r = Ops.addRMSNorm(x.detached(), residual: residual.detached(), weight: ws, epsilon: epsilon)
        let inputs = [x, residual] + [weight].compactMap { $0 }
        let outputs = record("addRMSNorm", inputs: inputs, outputs: [r.sum, r.output]) { g in
            let b = Ops.addRMSNormBackward(g[1], gradSum: g[0], sum: r.sum, rstd: r.rstd, weight: ws)
            return [b.gradInput, b.gradInput] + (weight == nil ? [] : [b.gradWeight])
        }
        return (outputs[0], outputs[1])
    }
}
