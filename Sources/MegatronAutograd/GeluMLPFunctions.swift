import MegatronTensor

extension Functional {
    /// A GeLU (tanh) MLP's local product, `linear(gelu_tanh(linear(x, w1, b1)), w2, b2)`, with the
    /// activation folded into the GEMMs as Megatron's bias-GeLU fusion does: on the GPU with bf16 / fp16
    /// operands, fc1's GEMM writes both `h = gelu(pre)` and `pre` (GELU_AUX_BIAS epilogue), and in
    /// backward the dgrad GEMM `g · w2` applies gelu'(pre) in its epilogue (DGELU), giving `d pre` at once.
    ///
    /// Only `pre` is saved, as `linear(activationOf:)` saves it: `h` feeds fc2 and is dropped, and
    /// backward recomputes it (one elementwise pass) for `w2`'s gradient. fc1's bias gradient comes from
    /// fc1's weight-gradient GEMM (BGRADB epilogue) as for any linear layer; weight gradients go straight
    /// into fp32 main grads when the pass offers them (gradient-accumulation fusion).
    ///
    /// Tensor parallelism stays outside: `x` is the input as gathered for column-parallel fc1, `w1`/`b1`
    /// and `w2` the local shards, and the result the local partial sum that row-parallel fc2 reduces
    /// (pass `fc2Bias: nil` then and add the bias after the reduction). On the CPU, with fp32 operands,
    /// or with `w1.shape[0]` not a multiple of 8 it runs the same two primitives unfused.
    ///
    /// ```swift
    /// // x [batch, seq, 768], w1 [3072, 768], b1 [3072], w2 [768, 3072], b2 [768]
    /// let y = Functional.geluMLP(x, fc1Weight: w1, fc1Bias: b1, fc2Weight: w2, fc2Bias: b2)
    /// ```
    public static func geluMLP(_ x: Tensor, fc1Weight: Tensor, fc1Bias: Tensor?, fc2Weight: Tensor, fc2Bias: Tensor?) -> Tensor {
        precondition(fc2Weight.rank == 2 && fc2Weight.shape[1] == fc1Weight.shape[0],
                     "geluMLP: fc2 weight \(fc2Weight.shape) does not take fc1's \(fc1Weight.shape[0]) outputs ([out, \(fc1Weight.shape[0])])")
        let (h, pre) = Ops.linearGelu(x.detached(), weight: fc1Weight.detached(), bias: fc1Bias?.detached())
        let y = Ops.linear(h, weight: fc2Weight.detached(), bias: fc2Bias?.detached())
        // Two nodes, as the unfused layers record them: fc1's backward is a plain linear one, and fc2's
        // keeps `pre` (not `h`) and turns `g` into `d pre` with the fused dgrad.
        let recordedPre = recordLinear(x, weight: fc1Weight, bias: fc1Bias, output: pre)
        return recordLinear(activationOf: recordedPre, .unary(.geluTanh), weight: fc2Weight, bias: fc2Bias, output: y)
    }
}
