import MegatronAutograd
import MegatronTensor

/// Layer norm over the last dimension with a learned scale and shift.
public final class LayerNorm: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let epsilon: Float

    public init(_ dimension: Int, epsilon: Float = 1e-5, dtype: DType = .float32) {
        weight = parameter(Tensor.ones([dimension], dtype: dtype))
        bias = parameter(Tensor.zeros([dimension], dtype: dtype))
        self.epsilon = epsilon
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        Functional.layerNorm(x, weight: weight, bias: bias, epsilon: epsilon)
    }

    /// `x + dropout(residual)` and the norm of that sum, in one fused pass (`Functional.addLayerNorm`).
    public func addNorm(_ x: Tensor, residual: Tensor, dropout: Dropout?) -> (sum: Tensor, normed: Tensor) {
        Functional.addLayerNorm(x, residual: residual, weight: weight, bias: bias, epsilon: epsilon,
                                residualDropout: dropout?.activeDraw)
    }
}

/// RMS norm over the last dimension with a learned scale.
public final class RMSNorm: Module {
    public let weight: Tensor
    public let epsilon: Float

    public init(_ dimension: Int, epsilon: Float = 1e-5, dtype: DType = .float32) {
        weight = parameter(Tensor.ones([dimension], dtype: dtype))
        self.epsilon = epsilon
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    public func callAsFunction(_ x: Tensor) -> Tensor { Functional.rmsNorm(x, weight: weight, epsilon: epsilon) }

    /// `x + dropout(residual)` and the norm of that sum, in one fused pass (`Functional.addRMSNorm`).
    public func addNorm(_ x: Tensor, residual: Tensor, dropout: Dropout?) -> (sum: Tensor, normed: Tensor) {
        Functional.addRMSNorm(x, residual: residual, weight: weight, epsilon: epsilon, residualDropout: dropout?.activeDraw)
    }
}
