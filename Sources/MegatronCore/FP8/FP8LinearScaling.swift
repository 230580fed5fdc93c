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

    public func quantizeInput(_ x: Tensor, transposed: Bool) -> FP8Operand { input.quantize(x, transposed: transposed) }
    public func quantizeWeight(_ weight: Tensor, transposed: Bool) -> FP8Operand { self.weight.quantize(weight, transposed: transposed) }
    public func quantizeGradOutput(_ gradOutput: Tensor, transposed: Bool) -> FP8Operand {
        self.gradOutput.quantize(gradOutput, transposed: transposed)
    }

    /// The three tensors by the names checkpoints give them.
    public var tensors: [(String, FP8TensorScaling)] { [("input", input), ("weight", weight), ("grad_output", gradOutput)] }
}
