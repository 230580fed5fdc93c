import MegatronAutograd
import MegatronTensor

/// Megatron's checks between backward and the update, the same for every optimizer: unscale the gradients
/// by `1 / lossScale`, skip the step when any rank's gradient holds inf or NaN, take the global L2 norm over
/// `gradStats`' ranks, and clip by it (`clip_grad_norm_fp32`: scale by `clipGrad / (norm + 1e-6)` when that
/// is below 1). `MixedPrecisionOptimizer` hands it whole gradients; `DistributedOptimizer` its shard of the
/// reduced gradients, with the data-parallel group among `gradStats`' groups.
///
/// On the CPU the gradients are unscaled and clipped in place; on a GPU one multi-tensor norm kernel reads
/// them and the update applies the scale (`Outcome.gradientScale`), so they are read once more, not twice.
///
/// ```swift
/// let clipping = GradientClipping(gradStats: GradientStatsGroups())
/// let outcome = try clipping.check(all: grads, counted: grads, lossScale: 1024, clipGrad: 1)
/// if !outcome.skip { /* update, multiplying the gradients by outcome.gradientScale */ }
/// ```
public struct GradientClipping {
    /// The ranks the norm and the inf/NaN flag span, and the parameters counted on this rank.
    public let gradStats: GradientStatsGroups

    public init(gradStats: GradientStatsGroups) {
        self.gradStats = gradStats
    }

    /// What the check decided.
    public struct Outcome {
        /// The global L2 norm of the unscaled gradients before clipping; infinite when the step is skipped.
        public var gradNorm: Float
        /// True when a gradient on some rank held inf or NaN: no rank updates.
        public var skip: Bool
        /// The factor the update must still multiply the gradients by (1 where they were scaled in place).
        public var gradientScale: Float

        static let skipped = Outcome(gradNorm: .infinity, skip: true, gradientScale: 1)
    }

    /// Checks `all` (every contiguous fp32 gradient this rank updates from; any inf/NaN skips the step) and
    /// measures `counted` (those of them, or views into them, that make this rank's share of the norm). Every
    /// rank of `gradStats`' groups must call it together.
    public func check(all: [Tensor], counted: [Tensor], lossScale: Float, clipGrad: Float) throws -> Outcome {
        let device = all.first?.device ?? .cpu
        if device == .cpu { return try hostCheck(all: all, counted: counted, lossScale: lossScale, clipGrad: clipGrad) }
        return try deviceCheck(all: all, counted: counted, lossScale: lossScale, clipGrad: clipGrad, device: device)
    }

    /// Unscales and clips the host buffers in place, as Megatron's fp32 main grads are.
    private func hostCheck(all: [Tensor], counted: [Tensor], lossScale: Float, clipGrad: Float) throws -> Outcome {
        func floats(_ t: Tensor) -> UnsafeMutableBufferPointer<Float> {
            UnsafeMutableBufferPointer(start: t.pointer(as: Float.self), count: t.count)
        }
        let buffers = all.map(floats)
        let nonFinite = lossScale != 1
            ? NonFiniteGradients.unscaleAndCheck(buffers, inverseScale: 1 / lossScale)
            : NonFiniteGradients.containsNonFinite(buffers.map { UnsafeBufferPointer($0) })
        let squares = counted.reduce(0.0) { $0 + GradientNorm.sumOfSquares(UnsafeBufferPointer(floats($1))) }
        let total = try gradStats.reduce(squares: squares, nonFinite: nonFinite, device: .cpu)
        if total.nonFinite { return .skipped }
        let norm = total.squares.squareRoot()
        if clipGrad > 0 { GradientNorm.clip(buffers, maxNorm: Double(clipGrad), totalNorm: norm) }
        return Outcome(gradNorm: Float(norm), skip: false, gradientScale: 1)
    }

    /// One norm kernel over the (still scaled) gradients and one host read; the unscale and the clip
    /// coefficient go to the update as one factor.
    private func deviceCheck(all: [Tensor], counted: [Tensor], lossScale: Float, clipGrad: Float,
                             device: Device) throws -> Outcome {
        let (local, elsewhere) = withoutGrad { () -> ([Float], Bool) in
            let local = counted.isEmpty ? [0, 0] : MultiTensorOps.globalNorm(counted).floats()
            // A gradient outside `counted` can still be non-finite.
            let elsewhere = all.count == counted.count ? false : MultiTensorOps.globalNorm(all).floats()[1] != 0
            return (local, elsewhere)
        }
        // The scalars cross ranks on the gradients' device (NCCL takes device tensors only).
        let total = try gradStats.reduce(squares: Double(local[0]) * Double(local[0]),
                                         nonFinite: local[1] != 0 || elsewhere || !local[0].isFinite, device: device)
        if total.nonFinite { return .skipped }
        let norm = Float(total.squares.squareRoot()) / lossScale
        guard norm.isFinite else { return .skipped }
        let coefficient = clipGrad > 0 ? min(1, GradientNorm.clipCoefficient(maxNorm: Double(clipGrad), totalNorm: Double(norm))) : 1
        return Outcome(gradNorm: norm, skip: false, gradientScale: Float(coefficient) / lossScale)
    }
}
