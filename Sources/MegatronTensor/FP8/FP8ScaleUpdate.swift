import Foundation

/// How delayed scaling turns its amax history into the amax it scales by (`--fp8-amax-compute-algo`).
public enum FP8AmaxComputeAlgo: String, Sendable, Codable, CaseIterable {
    /// The largest amax of the history window.
    case max
    /// The amax recorded last.
    case mostRecent = "most_recent"
}

/// Transformer Engine's per-tensor scale computations (`common/recipe/`), on host floats: the reference the
/// CUDA kernels (fp8.cu) are compared against, and what the CPU device runs.
public enum FP8ScaleMath {
    /// Delayed scaling's update of one tensor after a step (TE's `delayed_scaling.cu`): the amax is
    /// `history[0]` (most_recent) or the history's maximum (max); the history rolls one slot toward its
    /// front, `new[i] = old[i+1]` and `new[last] = old[0]`, and slot 0, the next step's, is zeroed; the scale
    /// becomes `(fp8Max / amax) / 2^margin` when amax is finite and positive (else it stays), and the
    /// largest fp32 where that overflows. Returns the new history, scale and scale inverse (1 / scale).
    public static func delayedUpdate(history: [Float], scale: Float, fp8Max: Float, margin: Float,
                                     algo: FP8AmaxComputeAlgo) -> (history: [Float], scale: Float, scaleInverse: Float) {
        precondition(!history.isEmpty, "an amax history holds at least one step")
        let amax = algo == .max ? history.dropFirst().reduce(history[0]) { $0.isNaN || $1.isNaN ? .nan : Swift.max($0, $1) } : history[0]
        var rolled = Array(history.dropFirst()) + [history[0]]
        rolled[0] = 0
        var next = scale
        if amax.isFinite && amax > 0 {
            next = (fp8Max / amax) / exp2(margin)
            if next.isInfinite { next = .greatestFiniteMagnitude }
        }
        return (rolled, next, 1 / next)
    }

    /// Current (tensorwise) scaling's scale from the amax of the tensor about to be cast (TE's
    /// `compute_scale_from_amax`): `fp8Max / amax`, 1 when amax is 0, infinite or NaN, the largest fp32 where
    /// the quotient overflows. Returns the scale and its inverse.
    public static func currentScale(amax: Float, fp8Max: Float) -> (scale: Float, scaleInverse: Float) {
        let a = Swift.max(amax, 0)
        var scale: Float = a.isFinite && a > 0 ? fp8Max / a : 1
        if scale.isInfinite { scale = .greatestFiniteMagnitude }
        return (scale, 1 / scale)
    }

    /// 2^x for the margin (an integer in practice; TE takes a float).
    static func exp2(_ x: Float) -> Float { Float(Foundation.exp2(Double(x))) }
}

extension Ops {
    /// `FP8ScaleMath.delayedUpdate` on tensors of one device, without a host sync on CUDA: `history` ([len] fp32)
    /// with its slot 0 replaced by `amax` (one fp32: this step's amax, already reduced over the amax group) and
    /// the old `scale` ([1]) give fresh tensors: the rolled history, the new scale and its inverse.
    public static func fp8DelayedScaleUpdate(history: Tensor, amax: Tensor, scale: Tensor, fp8Max: Float, margin: Float,
                                             algo: FP8AmaxComputeAlgo) -> (history: Tensor, scale: Tensor, scaleInverse: Tensor) {
        if let device = cudaDevice(history, amax, scale, op: "fp8DelayedScaleUpdate") {
            return CUDAFP8Matmul.delayedUpdate(history: history, amax: amax, scale: scale, fp8Max: fp8Max, margin: margin,
                                               algo: algo, on: device)
        }
        var window = history.floats()
        window[0] = amax.item()
        let r = FP8ScaleMath.delayedUpdate(history: window, scale: scale.item(), fp8Max: fp8Max, margin: margin, algo: algo)
        return (Tensor(shape: history.shape, values: r.history), Tensor(shape: [1], values: [r.scale]),
                Tensor(shape: [1], values: [r.scaleInverse]))
    }

    /// `FP8ScaleMath.currentScale` of a one-element fp32 `amax`, on its device: the scale and its inverse ([1] each).
    public static func fp8CurrentScale(amax: Tensor, fp8Max: Float) -> (scale: Tensor, scaleInverse: Tensor) {
        if let device = cudaDevice(amax, op: "fp8CurrentScale") {
            return CUDAFP8Matmul.currentScale(amax: amax, fp8Max: fp8Max, on: device)
        }
        let r = FP8ScaleMath.currentScale(amax: amax.item(), fp8Max: fp8Max)
        return (Tensor(shape: [1], values: [r.scale]), Tensor(shape: [1], values: [r.scaleInverse]))
    }
}
