import Foundation

/// Adam and AdamW with bias correction, with the operation order and fp32 roundings of
/// `torch.optim.Adam` / `AdamW` (single-tensor path, `foreach=False`, no amsgrad; multiply-adds
/// unfused, see `FloatLanes`):
///
///     param *= 1 - lr * weightDecay              (AdamW: decoupled weight decay)
///     g = grad + weightDecay * param             (Adam: L2 weight decay added to the gradient)
///     m = lerp(m, g, 1 - beta1)
///     v = beta2 * v + (1 - beta2) * g * g
///     param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
///
/// amsgrad is left out on purpose: Megatron never turns it on. This is also the CPU reference for the
/// fused GPU AdamW.
///
/// ```swift
/// let adamW = try AdamRule.adamW(beta1: 0.9, beta2: 0.95, eps: 1e-8)
/// adamW.update(param: p, grad: g, state: [m, v], step: 1, lr: 3e-4, weightDecay: 0.1)
/// ```
public struct AdamRule: UpdateRule {
    public let beta1: Double
    public let beta2: Double
    public let eps: Double
    /// True for AdamW (weight decay scales the parameter); false for Adam (L2 term in the gradient).
    public let decoupledWeightDecay: Bool

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, decoupledWeightDecay: Bool) throws {
        try require(beta1 >= 0 && beta1 < 1, "--adam-beta1 must be in [0, 1), got \(beta1)")
        try require(beta2 >= 0 && beta2 < 1, "--adam-beta2 must be in [0, 1), got \(beta2)")
        try require(eps >= 0, "--adam-eps must be >= 0, got \(eps)")
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// `torch.optim.AdamW`: Adam with decoupled weight decay.
    public static func adamW(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) throws -> AdamRule {
        try AdamRule(beta1: beta1, beta2: beta2, eps: eps, decoupledWeightDecay: true)
    }

    /// `torch.optim.Adam`: weight decay as an L2 term added to the gradient.
    public static func adam(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8) throws -> AdamRule {
        try AdamRule(beta1: beta1, beta2: beta2, eps: eps, decoupledWeightDecay: false)
    }

    /// The first moment `exp_avg` and the second moment `exp_avg_sq`, in that order.
    public var stateCount: Int { 2 }

    public func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                       state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float) {
        update(param: param, grad: grad, state: state, step: step, lr: Double(lr), weightDecay: Double(weightDecay))
    }

    /// Updates `param` and both moments in place; `step` counts from 1. Scalars are computed in Double
    /// and rounded to fp32 where torch rounds them.
    public func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                       state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Double, weightDecay: Double) {
        checkBuffers(param: param, grad: grad, state: state, expectedStates: 2, rule: "Adam")
        precondition(step >= 1, "Adam: step counts from 1, got \(step)")
        let s = Scalars(self, step: step, lr: lr, weightDecay: weightDecay)
        let p = param.baseAddress!, g = grad.baseAddress!
        let m = state[0].baseAddress!, v = state[1].baseAddress!
        forEachLaneBlock(param.count) { i, n in
            let pv = loadLanes(p, i, n) * s.paramScale
            let gv = loadLanes(g, i, n) + pv * s.l2
            var mv = loadLanes(m, i, n)
            // torch's lerp: start + w * (end - start) for w < 0.5, else end + (w - 1) * (end - start).
            mv = (s.lerpFromStart ? mv : gv) + s.lerpCoefficient * (gv - mv)
            let vv = loadLanes(v, i, n) * s.beta2 + s.oneMinusBeta2 * gv * gv
            let denominator = vv.squareRoot() / s.biasCorrection2Sqrt + s.eps
            storeLanes(pv + (s.negStepSize * mv) / denominator, p, i, n)
            storeLanes(mv, m, i, n)
            storeLanes(vv, v, i, n)
        }
    }

    /// The per-step scalars, rounded to fp32 where torch hands a Python float to an fp32 kernel.
    private struct Scalars {
        let paramScale: Float, l2: Float
        let lerpFromStart: Bool, lerpCoefficient: Float
        let beta2: Float, oneMinusBeta2: Float
        let biasCorrection2Sqrt: Float, eps: Float, negStepSize: Float

        init(_ rule: AdamRule, step: Int, lr: Double, weightDecay: Double) {
            // Either form is exact when weightDecay is 0: p * 1 and g + p * 0.
            paramScale = rule.decoupledWeightDecay ? Float(1 - lr * weightDecay) : 1
            l2 = rule.decoupledWeightDecay ? 0 : Float(weightDecay)
            let weight = Float(1 - rule.beta1)
            lerpFromStart = abs(weight) < 0.5
            lerpCoefficient = lerpFromStart ? weight : weight - 1
            beta2 = Float(rule.beta2)
            oneMinusBeta2 = Float(1 - rule.beta2)
            let biasCorrection1 = 1 - pow(rule.beta1, Double(step))
            biasCorrection2Sqrt = Float((1 - pow(rule.beta2, Double(step))).squareRoot())
            eps = Float(rule.eps)
            negStepSize = Float(-(lr / biasCorrection1))
        }
    }
}
