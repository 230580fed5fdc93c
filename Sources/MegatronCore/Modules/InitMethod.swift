import Foundation
import MegatronTensor

/// How a weight is drawn at initialization (Megatron's `init_method`). Biases always start at zero.
///
/// ```swift
/// let w = InitMethod.normal(std: 0.02).draw([out, inFeatures], dtype: .float32, generator: rng)
/// let x = InitMethod.xavierUniform.draw([out, inFeatures], dtype: .float32, generator: rng)
/// ```
public enum InitMethod: Sendable, Equatable {
    /// N(0, std²): Megatron's `init_method_normal(std)`.
    case normal(std: Float)
    /// U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) of a `[fan_out, fan_in]` matrix:
    /// `torch.nn.init.xavier_uniform_` (`--init-method-xavier-uniform`).
    case xavierUniform

    /// A whole weight of `shape` (`[out, in]` for a linear layer, `[count, dimension]` for an embedding),
    /// drawn from the generator's next offset. Tensor-parallel layers draw the whole weight and keep their
    /// slice, so the fans are the whole matrix's at every parallel size.
    public func draw(_ shape: [Int], dtype: DType, generator: PhiloxGenerator) -> Tensor {
        switch self {
        case .normal(let std):
            return Tensor.normal(shape, std: std, dtype: dtype, generator: generator)
        case .xavierUniform:
            precondition(shape.count == 2, "xavier uniform initialization wants a matrix, got shape \(shape)")
            let bound = Float((6 / Double(shape[0] + shape[1])).squareRoot())
            return Tensor.uniform(shape, low: -bound, high: bound, dtype: dtype, generator: generator)
        }
    }
}
