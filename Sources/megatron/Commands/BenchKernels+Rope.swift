import MegatronCUDA

extension KernelBench {
    /// The fused rotary embedding (rope.cu) at LLaMA-1B's head layout (8 key/value groups of 4 query
    /// heads, head dim 64, sequence 2048, bf16), the batch chosen so q is about `bytes`:
    ///
    /// - `rope fwd q (qkv view)`: q read as a strided view of the fused QKV output
    ///   `[b, s, 8, 6, 64]`, written contiguous `[b, 8, 4, s, 64]`, as SelfAttention calls it;
    /// - `rope bwd q`: the transposed rotation of a contiguous gradient.
    ///
    /// Each is charged q read once and written once plus one read of the cos and sin tables.
    func rotaryCases(bytes: Int) throws -> [KernelBenchResult] {
        let (groups, perGroup, sequence, headDim) = (8, 4, 2048, 64)
        let batch = max(1, bytes / (groups * perGroup * sequence * headDim * 2))
        let qCount = batch * groups * perGroup * sequence * headDim
        let qkv = try buffer(batch * sequence * groups * (perGroup + 2) * headDim, .bfloat16)
        let out = try buffer(qCount, .bfloat16), gradient = try buffer(qCount, .bfloat16)
        let cos = try buffer(sequence * headDim, .bfloat16), sin = try buffer(sequence * headDim, .bfloat16)
        defer { free(qkv, out, gradient, cos, sin) }
        let shape = "[\(batch), \(groups), \(perGroup), \(sequence), \(headDim)]"
        let traffic = 2 * qCount * 2 + 2 * sequence * headDim * 2
        let token = groups * (perGroup + 2) * headDim   // elements per position of the QKV output
        let view = RotaryProblem(outer: [batch, groups, perGroup], sequence: sequence, headDim: headDim, rotaryDim: headDim,
                                 strides: [sequence * token, (perGroup + 2) * headDim, headDim, token], tableStride: 0,
                                 backward: false)
        var transposed = view
        transposed.strides = [groups * perGroup * sequence * headDim, perGroup * sequence * headDim, sequence * headDim, headDim]
        transposed.backward = true
        return [
            try measure("rope fwd q (qkv view)", shape, traffic: traffic) {
                try kernels.rotaryEmbedding(out.address, input: qkv.address, cos: cos.address, sin: sin.address, problem: view,
                                       type: .bfloat16, stream: stream)
            },
            try measure("rope bwd q", shape, traffic: traffic) {
                try kernels.rotaryEmbedding(out.address, input: gradient.address, cos: cos.address, sin: sin.address,
                                       problem: transposed, type: .bfloat16, stream: stream)
            },
        ]
    }
}
