import MegatronParallel
import MegatronTensor

/// The FP8 scaling of one linear layer's GEMMs: its input, its weight and its output gradient each have
/// their own scale (Transformer Engine's forward and backward `fp8_meta` of a `Linear`).
public final class FP8LinearScaling: FP8LinearQuantizer {
    public let input: FP8TensorScaling
    public let weight: FP8TensorScaling
    public let gradOutput: FP8TensorScaling
    public let fp8WeightGradient: Bool

    public init(recipe: FP8Recipe, amaxGroup: Communicator?) {
        input = FP8TensorScaling(dtype: recipe.forwardDType, recipe: recipe, amaxGroup: amaxGroup)
        weight = FP8TensorScaling(dtype: recipe.forwardDType, recipe: recipe, amaxGroup: amaxGroup)
        gradOutput = FP8TensorScaling(dtype: recipe.gradientDType, recipe: recipe, amaxGroup: amaxGroup)
        fp8WeightGradient = recipe.fp8WeightGradient
    }

    public func quantizeInput(_ x: Tensor) -> FP8Tensor { input.quantize(x) }
    public func quantizeWeight(_ weight: Tensor) -> FP8Tensor { self.weight.quantize(weight) }
    public func quantizeGradOutput(_ gradOutput: Tensor) -> FP8Tensor { self.gradOutput.quantize(gradOutput) }

    /// The three tensors by the names checkpoints give them.
    public var tensors: [(String, FP8TensorScaling)] { [("input", input), ("weight", weight), ("grad_output", gradOutput)] }
}
