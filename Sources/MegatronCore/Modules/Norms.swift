import MegatronAutograd
import MegatronTensor

/// Layer norm over the last dimension with a learned scale and shift.
///
/// With `zeroCenteredGamma` (Megatron's `--apply-layernorm-1p`) the scale is stored as `w`, starts at zero
/// and applies as `1 + w`, so weight decay pulls it towards one.
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let epsilon: Float
    public let zeroCenteredGamma: Bool

    public init(_ dimension: Int, epsilon: Float = 1e-5, dtype: DType = .float32, zeroCenteredGamma: Bool = false) {
        weight = parameter(zeroCenteredGamma ? Tensor.zeros([dimension], dtype: dtype) : Tensor.ones([dimension], dtype: dtype))
        bias = parameter(Tensor.zeros([dimension], dtype: dtype))
        self.epsilon = epsilon
        self.zeroCenteredGamma = zeroCenteredGamma
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }

    /// The scale the norm applies: `weight`, or `1 + weight` when zero-centered.
    public var gamma: Tensor { zeroCenteredGamma ? weight + 1 : weight }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        runForward { Functional.layerNorm(x, weight: gamma, bias: bias, epsilon: epsilon) }
    }

    /// `x + dropout(residual)` and the norm of that sum, in one fused pass (`Functional.addLayerNorm`).
    public func addNorm(_ x: Tensor, residual: Tensor, dropout: Dropout?) -> (sum: Tensor, normed: Tensor) {
        runForward {
            Functional.addLayerNorm(x, residual: residual, weight: gamma, bias: bias, epsilon: epsilon,
                                    residualDropout: dropout?.activeDraw)
        }
    }
}

/// RMS norm over the last dimension with a learned scale; `zeroCenteredGamma` as `LayerNorm`'s.
public final class RMSNorm: Module {
    public let weight: Tensor
    public let epsilon: Float
    public let zeroCenteredGamma: Bool

    public init(_ dimension: Int, epsilon: Float = 1e-5, dtype: DType = .float32, zeroCenteredGamma: Bool = false) {
        weight = parameter(zeroCenteredGamma ? Tensor.zeros([dimension], dtype: dtype) : Tensor.ones([dimension], dtype: dtype))
        self.epsilon = epsilon
        self.zeroCenteredGamma = zeroCenteredGamma
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    /// The scale the norm applies: `weight`, or `1 + weight` when zero-centered.
    public var gamma: Tensor { zeroCenteredGamma ? weight + 1 : weight }

    public func callAsFunction(_ x: Tensor) -> Tensor { runForward { Functional.rmsNorm(x, weight: gamma, epsilon: epsilon) } }

    /// `x + dropout(residual)` and the norm of that sum, in one fused pass (`Functional.addRMSNorm`).
    public func addNorm(_ x: Tensor, residual: Tensor, dropout: Dropout?) -> (sum: Tensor, normed: Tensor) {
        runForward { Functional.addRMSNorm(x, residual: residual, weight: gamma, epsilon: epsilon, residualDropout: dropout?.activeDraw) }
    }
}
