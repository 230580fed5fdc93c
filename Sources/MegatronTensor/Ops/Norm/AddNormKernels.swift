import MegatronCUDA

extension Ops {
    /// `x + residual` and the layer norm of that sum over the last dimension: the residual add of a
    /// pre-norm transformer fused into the norm after it (one pass over memory on the GPU). Returns the
    /// sum (in the inputs' dtype, as an unfused add stores it), the normalized output, and the per-row
    /// mean and 1/std the backward needs.
    ///
    /// With `residualDropout`, the residual is `Ops.dropout(residual, p:, seed:, offset:)` (Megatron's
    /// bias-dropout-add): on the GPU dropped inside the same pass, with the same mask and rounding.
    ///
    ///     let r = Ops.addLayerNorm(h, residual: attentionOut, weight: gamma, bias: beta, epsilon: 1e-5)
    ///     // r.sum == h + attentionOut, r.output == layerNorm(r.sum)
    public static func addLayerNorm(_ x: Tensor, residual: Tensor, residualDropout: ResidualDropout? = nil, weight: Tensor?,
                                    bias: Tensor?, epsilon: Float) -> (sum: Tensor, output: Tensor, mean: Tensor, rstd: Tensor) {
        requireSameShape(x, residual, op: "addLayerNorm")
        if cudaDevice(x, residual, weight, bias, op: "addLayerNorm") != nil,
           let r = CUDAFusedOps.layerNorm(x, residual: residual, residualDropout: residualDropout.map(draw), weight: weight,
                                          bias: bias, epsilon: epsilon), let sum = r.sum {
            return (sum, r.output, r.mean, r.rstd)
        }
        // The CPU, and operands the fused kernel does not take: the add, then the norm of the stored sum.
        let sum = binary(x, dropped(residual, residualDropout), .add)
        let r = layerNorm(sum, weight: weight, bias: bias, epsilon: epsilon)
        return (sum, r.output, r.mean, r.rstd)
    }

    /// `x + residual` and its RMS norm, as `addLayerNorm`.
    public static func addRMSNorm(_ x: Tensor, residual: Tensor, residualDropout: ResidualDropout? = nil, weight: Tensor?,
                                  epsilon: Float) -> (sum: Tensor, output: Tensor, rstd: Tensor) {
        requireSameShape(x, residual, op: "addRMSNorm")
        if cudaDevice(x, residual, weight, op: "addRMSNorm") != nil,
           let r = CUDAFusedOps.rmsNorm(x, residual: residual, residualDropout: residualDropout.map(draw), weight: weight,
                                        epsilon: epsilon), let sum = r.sum {
            return (sum, r.output, r.rstd)
        }
        let sum = binary(x, dropped(residual, residualDropout), .add)
        let r = rmsNorm(sum, weight: weight, epsilon: epsilon)
        return (sum, r.output, r.rstd)
    }

    /// Backward of `addLayerNorm`: the gradient of x, which is the norm's input gradient plus
    /// `gradSum`, the gradient that reached the sum directly; the residual's gradient (the same, or with
    /// `residualDropout`, the forward's draw, that gradient dropped by the same mask: on the GPU in the
    /// same pass); and the weight and bias gradients. `sum`, `mean` and `rstd` are what the forward returned.
    public static func addLayerNormBackward(_ gradOutput: Tensor, gradSum: Tensor, sum: Tensor, mean: Tensor, rstd: Tensor,
                                            weight: Tensor?, residualDropout: ResidualDropout? = nil)
        -> (gradInput: Tensor, gradResidual: Tensor, gradWeight: Tensor, gradBias: Tensor)
    {
        requireSameShape(gradSum, sum, op: "addLayerNormBackward")
        if cudaDevice(gradOutput, gradSum, sum, mean, rstd, weight, op: "addLayerNormBackward") != nil,
           let r = CUDAFusedOps.layerNormBackward(gradOutput, gradSum: gradSum, residualDropout: residualDropout.map(draw), x: sum,
                                                  mean: mean, rstd: rstd, weight: weight) {
            return (r.gradInput, r.gradResidual ?? r.gradInput, r.gradWeight, r.gradBias)
        }
        let r = layerNormBackward(gradOutput, x: sum, mean: mean, rstd: rstd, weight: weight)
        let gradInput = binary(r.gradInput, gradSum, .add)
        return (gradInput, dropped(gradInput, residualDropout), r.gradWeight, r.gradBias)
    }

    /// Backward of `addRMSNorm`, as `addLayerNormBackward`.
    public static func addRMSNormBackward(_ gradOutput: Tensor, gradSum: Tensor, sum: Tensor, rstd: Tensor, weight: Tensor?,
                                          residualDropout: ResidualDropout? = nil)
        -> (gradInput: Tensor, gradResidual: Tensor, gradWeight: Tensor)
    {
        requireSameShape(gradSum, sum, op: "addRMSNormBackward")
        if cudaDevice(gradOutput, gradSum, sum, rstd, weight, op: "addRMSNormBackward") != nil,
           let r = CUDAFusedOps.rmsNormBackward(gradOutput, gradSum: gradSum, residualDropout: residualDropout.map(draw), x: sum,
                                                rstd: rstd, weight: weight) {
            return (r.gradInput, r.gradResidual ?? r.gradInput, r.gradWeight)
        }
        let r = rmsNormBackward(gradOutput, x: sum, rstd: rstd, weight: weight)
        let gradInput = binary(r.gradInput, gradSum, .add)
        return (gradInput, dropped(gradInput, residualDropout), r.gradWeight)
    }

    /// Inverted dropout on the residual of `addLayerNorm` / `addRMSNorm`: `Ops.dropout`'s probability and draw.
    public typealias ResidualDropout = (p: Float, seed: UInt64, offset: UInt64)

    private static func dropped(_ residual: Tensor, _ dropout: ResidualDropout?) -> Tensor {
        dropout.map { Ops.dropout(residual, p: $0.p, seed: $0.seed, offset: $0.offset) } ?? residual
    }

    private static func draw(_ dropout: ResidualDropout) -> DropoutDraw {
        DropoutDraw(probability: dropout.p, seed: dropout.seed, offset: dropout.offset)
    }

    private static func requireSameShape(_ a: Tensor, _ b: Tensor, op: String) {
        precondition(a.shape == b.shape, "\(op): the residual operands must have one shape, got \(a.shape) and \(b.shape)")
    }
}
