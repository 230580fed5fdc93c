import MegatronTensor

/// An elementwise activation between two linear layers that `Functional.linear(activationOf:)` computes
/// again in backward instead of keeping its output: an MLP then holds only `fc1`'s output per layer.
public enum RecomputedActivation: Equatable, CustomStringConvertible {
    /// GeLU (tanh or erf form), SiLU, ...: any `UnaryOp` with a backward.
    case unary(UnaryOp)
    /// A gated linear unit over `[gate, linear]` halves of the last dimension (SwiGLU, quick GeGLU).
    case glu(GatedLinearUnit)

    /// `silu(gate) * up`.
    public static let swiglu = RecomputedActivation.glu(.swiglu)

    public func forward(_ x: Tensor) -> Tensor {
        switch self {
        case .unary(let op): Ops.unary(x, op)
        case .glu(let unit): Ops.gatedLinearUnit(x, unit)
        }
    }

    public func backward(_ x: Tensor, gradOutput: Tensor) -> Tensor {
        switch self {
        case .unary(let op): Ops.unaryBackward(x, gradOutput: gradOutput, op)
        case .glu(let unit): Ops.gatedLinearUnitBackward(x, gradOutput: gradOutput, unit)
        }
    }

    /// The gradient with respect to `x` of `linear(forward(x), weight)`, from the gradient `g` of its
    /// output: `backward(x, g · weight)`. For tanh GeLU on the GPU that is one GEMM whose DGELU epilogue
    /// applies gelu' (`Ops.geluLinearInputGradient`), so no elementwise pass reads `g · weight` back.
    public func linearInputGradient(_ x: Tensor, gradOutput g: Tensor, weight: Tensor) -> Tensor {
        switch self {
        case .unary(.geluTanh): Ops.geluLinearInputGradient(gradOutput: g, weight: weight, preActivation: x)
        default: backward(x, gradOutput: Ops.matmul(g, weight))
        }
    }

    public var description: String {
        switch self {
        case .unary(let op): "\(op)"
        case .glu(let unit): "\(unit)"
        }
    }
}

extension Functional {
    /// `linear(activation(x), weight, bias)` as one primitive that saves `x`, not `activation(x)`:
    /// backward recomputes the activation (one elementwise pass) for the weight gradient. This is
    /// what keeps an MLP's activation memory at one `[tokens, ffn]` tensor per layer instead of two.
    ///
    ///     let pre = Functional.linear(x, weight: w1, bias: b1)
    ///     let y = Functional.linear(activationOf: pre, .unary(.geluTanh), weight: w2, bias: b2)
    public static func linear(activationOf x: Tensor, _ activation: RecomputedActivation, weight: Tensor, bias: Tensor?) -> Tensor {
        let y = Ops.linear(activation.forward(x.detached()), weight: weight.detached(), bias: bias?.detached())
        return recordLinear(activationOf: x, activation, weight: weight, bias: bias, output: y)
    }

    /// Records `y`, which the caller computed as `linear(activation(x), weight, bias)` (possibly with
    /// the activation fused into the GEMM that made `x`, as `geluMLP` does), with the backward of
    /// `linear(activationOf:)`: it saves `x` only.
    static func recordLinear(activationOf x: Tensor, _ activation: RecomputedActivation, weight: Tensor, bias: Tensor?,
                             output y: Tensor) -> Tensor {
        let (xs, ws) = (x.detached(), weight.detached())
        let (needX, needW, needB) = (x.requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false)
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        return recordAccumulating("linear(\(activation))", inputs: inputs, output: y) { g, buffers in
            let gx = needX ? activation.linearInputGradient(xs, gradOutput: g, weight: ws) : nil
            let h = needW || needB ? activation.forward(xs) : xs
            let parameters = linearParameterGradients(g, h, needWeight: needW, needBias: needB, buffers: buffers)
            return [gx.map(InputGradient.tensor), parameters.weight] + (bias == nil ? [] : [parameters.bias.map(InputGradient.tensor)])
        }
    }
}
