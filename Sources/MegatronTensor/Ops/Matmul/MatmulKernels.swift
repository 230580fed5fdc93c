extension Ops {
    /// Matrix product over the last two dimensions, `[..., m, k] x [..., k, n] -> [..., m, n]`, with the
    /// leading (batch) dimensions broadcast. Transposed views are read in place, not copied.
    public static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank >= 2, got \(a.shape) and \(b.shape)")
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        precondition(b.shape[b.rank - 2] == k, "matmul shapes \(a.shape) and \(b.shape) do not chain")
        let batch = Shape.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)))
        if cudaDevice(a, b, op: "matmul") != nil {
            return CUDAOps.matmul(a, b, batch: batch, m: m, k: k, n: n, dtype: resultType(a.dtype, b.dtype))
        }
        let ea = GemmOperand(a.cast(to: .float32).expanded(to: batch + [m, k]))
        let eb = GemmOperand(b.cast(to: .float32).expanded(to: batch + [k, n]))
        let batches = Shape.elementCount(batch)
        let dtype = resultType(a.dtype, b.dtype)
        return Tensor.computed(shape: batch + [m, n], dtype: dtype) { out in
            for i in 0..<batches {
                cpuSgemm(transA: ea.transposed, transB: eb.transposed, m: m, n: n, k: k, alpha: 1,
                         a: ea.matrix(i), lda: ea.leading, b: eb.matrix(i), ldb: eb.leading,
                         beta: 0, c: out.baseAddress! + i * m * n, ldc: n)
            }
        }
    }
}

extension GemmOperand {
    /// Matrix `i` of the batch in host memory (fp32).
    func matrix(_ i: Int) -> UnsafePointer<Float> { UnsafePointer(base.pointer(as: Float.self) + batchOffsets[i]) }
}

extension Ops {
    /// A linear layer's forward, `x W^T + bias` for `x [..., in]` and `weight [out, in]`: on the GPU one
    /// cuBLASLt GEMM over all tokens with the bias added in its epilogue.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2 && x.shape.last == weight.shape[1],
                     "linear: input \(x.shape) does not match weight \(weight.shape) ([out, in])")
        precondition(bias == nil || bias!.shape == [weight.shape[0]], "linear: bias \(bias!.shape) for weight \(weight.shape)")
        if cudaDevice(x, weight, bias, op: "linear") != nil, let y = CUDAOps.linear(x, weight: weight, bias: bias) { return y }
        let y = matmul(x, weight.transposed(0, 1))
        return bias.map { binary(y, $0, .add) } ?? y
    }
}

extension Ops {
    /// A linear layer's weight gradient `gᵀ x` over all tokens (`gradOutput [..., out]`, `input [..., in]`)
    /// and, with `withBias`, the bias gradient `Σ_tokens g`; on the GPU one GEMM computes both.
    public static func linearParameterGradients(gradOutput: Tensor, input: Tensor, withBias: Bool) -> (weight: Tensor, bias: Tensor?) {
        let (out, inFeatures) = (gradOutput.shape.last!, input.shape.last!)
        let (g, x) = (gradOutput.reshaped([-1, out]), input.reshaped([-1, inFeatures]))
        if cudaDevice(g, x, op: "linear weight gradient") != nil, let r = CUDAOps.linearParameterGradients(g, x, withBias: withBias) {
            return r
        }
        return (matmul(g.transposed(0, 1), x), withBias ? reduce(g, dims: [0], .sum) : nil)
    }
}

extension Ops {
    /// `weightGradient += gᵀ x` for a linear layer, the wgrad GEMM writing straight into `weightGradient`
    /// (a contiguous fp32 `[out, in]` buffer: a parameter's main grad), so no 16-bit weight gradient is
    /// made and no separate accumulate runs (Megatron's gradient-accumulation fusion). With `withBias` it
    /// returns the bias gradient `Σ_tokens g` in fp32 (on the GPU from the same GEMM's BGRADB epilogue).
    ///
    /// ```swift
    /// // mainGrad [out, in] fp32; g [batch, seq, out], x [batch, seq, in] bf16
    /// let biasGrad = Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: mainGrad, withBias: true)
    /// ```
    @discardableResult
    public static func accumulateLinearWeightGradient(gradOutput: Tensor, input: Tensor, into weightGradient: Tensor,
                                                      withBias: Bool) -> Tensor? {
        let (out, inFeatures) = (gradOutput.shape.last!, input.shape.last!)
        precondition(weightGradient.shape == [out, inFeatures],
                     "linear weight gradient of shape [\(out), \(inFeatures)] cannot accumulate into \(weightGradient.shape)")
        precondition(weightGradient.dtype == .float32 && weightGradient.isContiguous,
                     "linear weight gradient accumulates into a contiguous fp32 buffer, got \(weightGradient.dtype)")
        let (g, x) = (gradOutput.reshaped([-1, out]), input.reshaped([-1, inFeatures]))
        precondition(g.shape[0] == x.shape[0], "linear gradient over \(g.shape[0]) tokens but input of \(x.shape[0])")
        if g.shape[0] == 0 { return withBias ? Tensor.zeros([out], device: weightGradient.device) : nil }
        if cudaDevice(g, x, weightGradient, op: "linear weight gradient accumulation") != nil {
            if CUDAOps.acceptsWeightGradientAccumulation(g, x) {
                return CUDAOps.accumulateLinearWeightGradient(g, x, into: weightGradient, withBias: withBias)
            }
            // Operands the fused GEMM does not take (mixed dtypes): compute the gradients, then add.
            let r = linearParameterGradients(gradOutput: g, input: x, withBias: withBias)
            accumulate(r.weight, into: weightGradient)
            return r.bias?.cast(to: .float32)
        }
        let (gf, xf) = (g.cast(to: .float32).madeContiguous(), x.cast(to: .float32).madeContiguous())
        withExtendedLifetime((gf, xf, weightGradient)) {
            cpuSgemm(transA: true, transB: false, m: out, n: inFeatures, k: g.shape[0], alpha: 1,
                     a: gf.pointer(as: Float.self), lda: out, b: xf.pointer(as: Float.self), ldb: inFeatures,
                     beta: 1, c: weightGradient.pointer(as: Float.self), ldc: inFeatures)
        }
        return withBias ? reduce(gf, dims: [0], .sum) : nil
    }
}
