import MegatronTensor

extension Functional {
    /// Scaled-dot-product attention `softmax(q kᵀ * scale + mask) v` as one differentiable primitive
    /// whose backward recomputes the probabilities from the saved row log-sum-exp: the `[s, t]`
    /// scores are never stored. On CUDA with bf16/fp16 and a head dim that is a multiple of 8 up to 256
    /// it runs fused flash attention (`Ops.attentionIsFused`); elsewhere the CPU reference.
    ///
    /// With `dropout` (a probability and the generator its mask draws from, one draw per call), the
    /// probabilities are dropped inside the fused kernels (`AttentionDropout` gives the mask); the
    /// backward reuses the forward's draw.
    ///
    /// q is `[b, heads, s, d]` or grouped `[b, kvHeads, heads / kvHeads, s, d]`; k and v are
    /// `[b, kvHeads, t, d]` (or `[b, kvHeads, 1, t, d]`), any strides with the last dim contiguous.
    /// Query head `h` attends with key/value head `h / (heads / kvHeads)`. With `causal`, the queries
    /// are the last `s` of the `t` positions (t > s continues a KV cache). The result has q's shape and
    /// is laid out in memory as `[b, s, heads, d]`, so merging heads for the output projection is free:
    ///
    ///     let o = Functional.scaledDotProductAttention(q, k, v, causal: true)       // [b, heads, s, d]
    ///     let merged = o.permute([0, 2, 1, 3]).reshape([b, s, heads * d])           // no copy
    ///
    /// With a sliding `window` and / or `sinks` (one logit per query head, any float dtype, a parameter or
    /// not; `AttentionMasking`), gpt-oss's attention: the sinks get their gradient too.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool = true,
                                                 scale: Float? = nil,
                                                 dropout: (probability: Float, generator: PhiloxGenerator)? = nil,
                                                 window: Int? = nil, sinks: Tensor? = nil) -> Tensor {
        let scale = scale ?? 1 / Float(q.shape.last!).squareRoot()
        let (qs, ks, vs) = (q.detached(), k.detached(), v.detached())
        let drop = dropout.flatMap { p, generator in
            p > 0 ? AttentionDropout(probability: p, seed: generator.seed, offset: generator.nextOffset()) : nil
        }
        let sinkLogits = sinks.map { $0.detached().cast(to: .float32) }
        let masking = AttentionMasking(window: window, sinks: sinkLogits)
        let r = Ops.attention(q: qs, k: ks, v: vs, causal: causal, scale: scale, dropout: drop, masking: masking)
        let output = r.output
        return record("scaledDotProductAttention", inputs: [q, k, v] + (sinks.map { [$0] } ?? []), output: output) { g in
            let grads = Ops.attentionBackward(gradOutput: g, q: qs, k: ks, v: vs, output: output, logSumExp: r.logSumExp,
                                              causal: causal, scale: scale, dropout: drop, masking: masking)
            var inputGradients = [grads.gradQ, grads.gradK, grads.gradV]
            if let sinks, let sinkLogits {
                inputGradients.append(Ops.attentionSinkGradient(gradOutput: g, output: output, logSumExp: r.logSumExp,
                                                                sinks: sinkLogits).cast(to: sinks.dtype))
            }
            return inputGradients
        }
    }
}
