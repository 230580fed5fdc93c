import MegatronAutograd
import MegatronTensor

/// How one optimizer (SGD, Adam, AdamW) changes fp32 parameters from fp32 gradients and its state buffers.
public protocol UpdateRule {
    /// fp32 state buffers kept per parameter (momentum: 1; Adam: 2).
    var stateCount: Int { get }
    /// Updates `param` in place; `step` counts from 1.
    func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float)
}

/// Parameters that share a learning-rate multiplier and weight decay.
public struct ParamGroup {
    public var parameters: [(name: String, tensor: Tensor)]
    public var weightDecay: Float
    public var lrMultiplier: Float

    public init(parameters: [(name: String, tensor: Tensor)], weightDecay: Float, lrMultiplier: Float = 1) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.lrMultiplier = lrMultiplier
    }
}

/// Megatron's optimizer wrapper: fp32 main gradients, fp32 master weights for bf16 / fp16 parameters,
/// gradient clipping by global L2 norm, loss-scale handling and skipped steps on inf/NaN.
///
/// ```swift
/// let opt = MixedPrecisionOptimizer(groups: groups, rule: AdamWRule(...))
/// opt.zeroGrad()
/// loss.backward()
/// let report = opt.step(lr: 3e-4, clipGrad: 1.0)
/// ```
public final class MixedPrecisionOptimizer {
    public let groups: [ParamGroup]
    public let rule: UpdateRule
    /// Updates taken so far (skipped steps excluded).
    public private(set) var stepCount = 0
    /// fp32 master copy per parameter (the parameter itself when it is fp32).
    private var masters: [Tensor] = []
    private var states: [[Tensor]] = []
    private var mainGrads: [Tensor] = []

    public init(groups: [ParamGroup], rule: UpdateRule) {
        self.groups = groups
        self.rule = rule
        for (_, p) in groups.flatMap(\.parameters) {
            masters.append(p.dtype == .float32 ? p : p.cast(to: .float32))
            states.append((0..<rule.stateCount).map { _ in Tensor.zeros(p.shape) })
            mainGrads.append(Tensor.zeros(p.shape))
        }
    }

    /// Every parameter of every group, in order.
    public var parameters: [Tensor] { groups.flatMap { $0.parameters.map(\.tensor) } }

    /// Points every parameter's `.grad` at a zeroed fp32 main-grad buffer, so backward accumulates in fp32.
    public func zeroGrad() {
        for (p, g) in zip(parameters, mainGrads) {
            g.pointer(as: Float.self).update(repeating: 0, count: g.count)
            p.grad = g
        }
    }

    /// What one `step` did.
    public struct StepReport {
        /// Global L2 norm of the (unscaled) gradients before clipping.
        public var gradNorm: Float
        /// False when an inf/NaN gradient made the step be skipped.
        public var updated: Bool
    }

    /// Unscales the gradients by `1 / lossScale`, skips the update if any is inf/NaN, clips to `clipGrad`
    /// (0: no clipping) and applies the rule with `lr` times each group's multiplier.
    @discardableResult
    public func step(lr: Float, clipGrad: Float = 0, lossScale: Float = 1) -> StepReport {
        let grads = parameters.map { $0.grad ?? Tensor.zeros($0.shape) }.map { $0.cast(to: .float32).contiguous() }
        if lossScale != 1 { for g in grads { scale(g, by: 1 / lossScale) } }
        let norm = globalNorm(grads)
        guard norm.isFinite else { return StepReport(gradNorm: norm, updated: false) }
        if clipGrad > 0 {
            let coefficient = clipGrad / (norm + 1e-6)
            if coefficient < 1 { for g in grads { scale(g, by: coefficient) } }
        }
        stepCount += 1
        var index = 0
        for group in groups {
            for (_, p) in group.parameters {
                apply(index, grad: grads[index], lr: lr * group.lrMultiplier, weightDecay: group.weightDecay)
                if p.dtype != .float32 { withoutGrad { Ops.copy(masters[index], into: p) } }
                index += 1
            }
        }
        return StepReport(gradNorm: norm, updated: true)
    }

    /// fp32 masters (for non-fp32 parameters) and state buffers by name, for checkpoints:
    /// `master.<param>` and `state<k>.<param>`.
    public func stateTensors() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (i, (name, p)) in groups.flatMap(\.parameters).enumerated() {
            if p.dtype != .float32 { out["master." + name] = masters[i] }
            for (k, s) in states[i].enumerated() { out["state\(k).\(name)"] = s }
        }
        return out
    }

    /// Restores what `stateTensors` saved and the number of steps taken.
    public func loadState(_ tensors: [String: Tensor], stepCount: Int) throws {
        for (i, (name, p)) in groups.flatMap(\.parameters).enumerated() {
            var targets: [(String, Tensor)] = states[i].enumerated().map { ("state\($0.offset).\(name)", $0.element) }
            if p.dtype != .float32 { targets.append(("master." + name, masters[i])) }
            for (key, target) in targets {
                guard let saved = tensors[key] else { throw StateDictError.missingKey(key) }
                guard saved.shape == target.shape else {
                    throw StateDictError.shapeMismatch(key: key, expected: target.shape, found: saved.shape)
                }
                Ops.copy(saved, into: target)
            }
        }
        self.stepCount = stepCount
    }

    private func apply(_ i: Int, grad: Tensor, lr: Float, weightDecay: Float) {
        let m = masters[i]
        let param = UnsafeMutableBufferPointer(start: m.pointer(as: Float.self), count: m.count)
        let g = UnsafeBufferPointer(start: grad.pointer(as: Float.self), count: grad.count)
        let state = states[i].map { UnsafeMutableBufferPointer(start: $0.pointer(as: Float.self), count: $0.count) }
        rule.update(param: param, grad: g, state: state, step: stepCount, lr: lr, weightDecay: weightDecay)
    }

    private func scale(_ t: Tensor, by factor: Float) {
        let p = t.pointer(as: Float.self)
        for i in 0..<t.count { p[i] *= factor }
    }

    private func globalNorm(_ grads: [Tensor]) -> Float {
        var total: Double = 0
        for g in grads {
            let p = g.pointer(as: Float.self)
            for i in 0..<g.count { total += Double(p[i]) * Double(p[i]) }
        }
        return Float(total.squareRoot())
    }
}
