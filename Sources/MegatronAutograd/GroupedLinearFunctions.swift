import MegatronTensor

extension Functional {
    /// Grouped linear layers without bias (the FC1 or FC2 of all of an MoE layer's local experts at once):
    /// `x [R, in]`'s rows in consecutive groups of `counts`, group g times `weights[g]ᵀ` (`[out, in]`), as one
    /// grouped GEMM each for the output, the input gradient and the weight gradients.
    ///
    /// Weight gradients go straight into each weight's fp32 main grad when the pass offers it, as
    /// `linear`'s do (gradient-accumulation fusion).
    ///
    /// ```swift
    /// let h = Functional.groupedLinear(permuted, weights: experts.map(\.linearFC1.weight), counts: tokensPerExpert)
    /// ```
    public static func groupedLinear(_ x: Tensor, weights: [Tensor], counts: [Int]) -> Tensor {
        let (xs, ws) = (x.detached(), weights.map { $0.detached() })
        let needX = x.requiresGrad, needW = weights.map(\.requiresGrad)
        let y = Ops.groupedLinear(xs, weights: ws, counts: counts)
        return recordAccumulating("groupedLinear", inputs: [x] + weights, output: y) { g, buffers in
            let gx = needX ? Ops.groupedLinearInputGradient(g, weights: ws, counts: counts) : nil
            let targets = weights.indices.map { needW[$0] ? buffers.accumulationTarget(forInput: 1 + $0) : nil }
            // A weight needing no gradient is computed all the same (cheap next to the others) and dropped.
            let grads = Ops.groupedLinearWeightGradients(gradOutput: g, input: xs, counts: counts, into: targets)
            let weightGradients: [InputGradient?] = weights.indices.map { e in
                guard needW[e] else { return nil }
                return grads[e].map(InputGradient.tensor) ?? .accumulatedInPlace
            }
            return [gx.map(InputGradient.tensor)] + weightGradients
        }
    }
}
