extension Ops {
    /// `h = gelu_tanh(x Wᵀ + b)` together with its input `pre = x Wᵀ + b`, for `x [..., in]`, `weight
    /// [features, in]`: the first half of a GeLU MLP, whose backward needs `pre`. On the GPU with bf16 /
    /// fp16 operands one cuBLASLt GEMM writes both (GELU_AUX_BIAS epilogue: D = h, aux = pre), so no
    /// separate activation kernel reads `pre` back; elsewhere (CPU, fp32, `features` not a multiple of 8)
    /// it is `linear` then `unary(.geluTanh)`.
    ///
    /// The epilogue applies GeLU to the fp32 accumulator before rounding, the unfused path to the rounded
    /// `pre`: `h` may differ from `unary(pre, .geluTanh)` by one unit in the last place of the 16-bit type.
    ///
    /// ```swift
    /// let (h, pre) = Ops.linearGelu(x, weight: w1, bias: b1)   // x [tokens, 768], w1 [3072, 768]
    /// ```
    public static func linearGelu(_ x: Tensor, weight: Tensor, bias: Tensor?) -> (output: Tensor, preActivation: Tensor) {
        precondition(weight.rank == 2 && x.shape.last == weight.shape[1],
                     "linearGelu: input \(x.shape) does not match weight \(weight.shape) ([features, in])")
        precondition(bias == nil || bias!.shape == [weight.shape[0]], "linearGelu: bias \(bias!.shape) for weight \(weight.shape)")
        if cudaDevice(x, weight, bias, op: "linear+gelu") != nil, let fused = CUDAOps.linearGelu(x, weight: weight, bias: bias) {
            return fused
        }
        let pre = linear(x, weight: weight, bias: bias)
        return (unary(pre, .geluTanh), pre)
    }

    /// `(g · W) ⊙ gelu_tanh'(pre)`: the gradient with respect to `pre` of `linear(gelu_tanh(pre), W)`,
    /// from the gradient `g [..., out]` of its output, for `weight [out, features]` and `pre [..., features]`.
    /// On the GPU with bf16 / fp16 operands it is one cuBLASLt GEMM with the DGELU epilogue (aux = pre),
    /// which also skips rounding `g · W` to 16 bits before the product; elsewhere a matmul, then
    /// `unaryBackward(pre, .geluTanh)`.
    ///
    /// ```swift
    /// let gradPre = Ops.geluLinearInputGradient(gradOutput: g, weight: w2, preActivation: pre)
    /// ```
    public static func geluLinearInputGradient(gradOutput g: Tensor, weight: Tensor, preActivation pre: Tensor) -> Tensor {
        precondition(weight.rank == 2 && g.shape.last == weight.shape[0] && pre.shape.last == weight.shape[1]
                         && g.shape.dropLast() == pre.shape.dropLast(),
                     "geluLinearInputGradient: gradient \(g.shape), weight \(weight.shape) and pre-activation \(pre.shape) do not match")
        if cudaDevice(g, weight, pre, op: "gelu linear input gradient") != nil,
           let fused = CUDAOps.geluLinearInputGradient(g, weight: weight, preActivation: pre) {
            return fused
        }
        return unaryBackward(pre, gradOutput: matmul(g, weight), .geluTanh)
    }

    /// Whether `linearGelu` and `geluLinearInputGradient` run as fused cuBLASLt GEMMs for a layer of
    /// `features` GeLU units with operands of `dtype` on `device` (unless cuBLASLt offers no algorithm
    /// for the epilogue, where they fall back too).
    public static func geluEpilogueApplies(features: Int, dtype: DType, device: Device) -> Bool {
        device != .cpu && CUDAOps.geluEpilogueApplies(features: features, dtype: dtype)
    }
}
