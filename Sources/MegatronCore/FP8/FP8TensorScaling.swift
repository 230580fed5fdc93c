import MegatronParallel
import MegatronTensor

/// One tensor's FP8 scaling (an entry of Transformer Engine's `fp8_meta`): the fp8 dtype it is cast to and,
/// under delayed scaling, its amax history, scale and scale inverse, kept on the tensor's device.
///
/// Delayed scaling casts step t with the scale made from the amaxes of steps before t. Each cast records its
/// tensor's amax; the next cast first folds that amax in: the max over `amaxGroup` (Megatron's amax-reduction
/// group, tensor x data x context parallel), then `Ops.fp8DelayedScaleUpdate` (history roll, new scale). Folding
/// at the next use rather than at the end of the step gives the same scales and needs no hook in the step.
/// Tensorwise scaling keeps no state: each cast scales by its own tensor's amax.
public final class FP8TensorScaling {
    public let dtype: DType
    public let recipe: FP8Recipe
    let amaxGroup: Communicator?
    /// The amax window, `amaxHistoryLength` fp32, slot 0 the one the next update fills.
    public private(set) var amaxHistory: Tensor
    /// What this tensor is multiplied by before the cast; 1 until the first update.
    public private(set) var scale: Tensor
    /// 1 / scale: what the GEMM multiplies the product by.
    public private(set) var scaleInverse: Tensor
    /// The amax of the last cast (this rank's), not yet folded into the history.
    private var pendingAmax: Tensor?

    public init(dtype: DType, recipe: FP8Recipe, amaxGroup: Communicator?) {
        (self.dtype, self.recipe, self.amaxGroup) = (dtype, recipe, amaxGroup)
        amaxHistory = Tensor.zeros([recipe.amaxHistoryLength])
        (scale, scaleInverse) = (Tensor.ones([1]), Tensor.ones([1]))
    }

    var largestFinite: Float { FloatFormats.largestFinite(dtype) }

    /// `x` cast to this tensor's fp8 dtype with the recipe's scale.
    public func quantize(_ x: Tensor) -> FP8Tensor { quantize(x, transposed: false).rowwise }

    /// `x` cast to this tensor's fp8 dtype with the recipe's scale, and its transposed copy when `transposed` (x a
    /// matrix). Delayed scaling records x's amax in the same pass over x as the cast (`Ops.fp8Quantize`); tensorwise
    /// needs it before the cast, hence a pass of its own.
    public func quantize(_ x: Tensor, transposed: Bool) -> FP8Operand {
        switch recipe.scaling {
        case .tensorwise:
            let current = Ops.fp8CurrentScale(amax: Ops.absMax(x), fp8Max: largestFinite)
            return Ops.fp8Quantize(x, to: dtype, scale: current.scale, scaleInverse: current.scaleInverse, transposed: transposed,
                                   recordAmax: false).operand
        case .delayed:
            moveState(to: x.device)
            foldPendingAmax()
            let (operand, amax) = Ops.fp8Quantize(x, to: dtype, scale: scale, scaleInverse: scaleInverse, transposed: transposed,
                                                  recordAmax: true)
            pendingAmax = amax
            return operand
        }
    }

    /// Delayed scaling's update from the amax recorded last, reduced over the amax group; nothing when no cast
    /// happened since the last update. Every rank of the group must call it at the same point (a collective).
    public func foldPendingAmax() {
        guard let amax = pendingAmax else { return }
        pendingAmax = nil
        let reduced = amaxGroup.map { $0.size > 1 ? $0.allReduced(amax.reshaped([1]), .max) : amax } ?? amax
        (amaxHistory, scale, scaleInverse) = Ops.fp8DelayedScaleUpdate(
            history: amaxHistory, amax: reduced.reshaped([1]), scale: scale, fp8Max: largestFinite,
            margin: Float(recipe.margin), algo: recipe.amaxComputeAlgo)
    }

    private func moveState(to device: Device) {
        guard amaxHistory.device != device else { return }
        (amaxHistory, scale, scaleInverse) = (amaxHistory.to(device), scale.to(device), scaleInverse.to(device))
        pendingAmax = pendingAmax?.to(device)
    }

    /// The state a checkpoint keeps (after folding any pending amax in: a collective).
    public func savedState() -> FP8ScalingState {
        foldPendingAmax()
        return FP8ScalingState(amaxHistory: amaxHistory.to(.cpu).floats(), scale: scale.to(.cpu).item())
    }

    /// Restores `state` (from `savedState`), on the device this state lives on.
    public func restore(_ state: FP8ScalingState) throws {
        guard state.amaxHistory.count == recipe.amaxHistoryLength else {
            throw ConfigError("the checkpoint's FP8 amax history holds \(state.amaxHistory.count) steps, this run's "
                + "--fp8-amax-history-len \(recipe.amaxHistoryLength)")
        }
        let device = amaxHistory.device
        pendingAmax = nil
        amaxHistory = Tensor(shape: [state.amaxHistory.count], values: state.amaxHistory).to(device)
        scale = Tensor(shape: [1], values: [state.scale]).to(device)
        scaleInverse = Tensor(shape: [1], values: [1 / state.scale]).to(device)
    }
}

/// A delayed-scaling state as checkpoints keep it (Transformer Engine's `_extra_state` holds the same).
public struct FP8ScalingState: Codable, Equatable, Sendable {
    public var amaxHistory: [Float]
    public var scale: Float

    enum CodingKeys: String, CodingKey { case amaxHistory = "amax_history", scale }
}
