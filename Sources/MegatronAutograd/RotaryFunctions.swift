import MegatronTensor

extension Functional {
    /// Rotary position embedding of `x [..., seq, headDim]` by the tables `cos` and `sin`
    /// (`[seq, rotaryDim]`, or `[x.size(0), seq, rotaryDim]` for a table per batch row) as one
    /// primitive: one fused kernel forward and one backward (the transposed rotation) on the GPU,
    /// instead of the ~10 ops of `x * cos + rotate_half(x) * sin`. See `Ops.rotaryEmbedding`.
    /// The tables take no gradient.
    ///
    ///     let q = Functional.rotaryEmbedding(qView, cos: cos, sin: sin)   // qView may be strided
    public static func rotaryEmbedding(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
        let (cos, sin) = (cos.detached(), sin.detached())
        let output = Ops.rotaryEmbedding(x.detached(), cos: cos, sin: sin)
        return record("rotaryEmbedding", inputs: [x], output: output) { g in
            [Ops.rotaryEmbedding(g, cos: cos, sin: sin, backward: true)]
        }
    }
}
