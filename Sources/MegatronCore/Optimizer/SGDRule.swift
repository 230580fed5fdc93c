/// SGD with momentum, dampening, Nesterov momentum and L2 weight decay, with the operation order and
/// fp32 roundings of `torch.optim.SGD` (single-tensor path, `foreach=False`; multiply-adds unfused, see
/// `FloatLanes`):
///
///     g = grad + weightDecay * param
///     buf = g                                    (first step)
///     buf = momentum * buf + (1 - dampening) * g (later steps)
///     d = nesterov ? g + momentum * buf : buf    (d = g without momentum)
///     param -= lr * d
///
/// ```swift
/// let sgd = try SGDRule(momentum: 0.9, nesterov: true)
/// sgd.update(param: p, grad: g, state: [momentumBuffer], step: 1, lr: 0.1, weightDecay: 0.01)
/// ```
public struct SGDRule: UpdateRule {
    public let momentum: Double
    public let dampening: Double
    public let nesterov: Bool

    public init(momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false) throws {
        try require(momentum >= 0, "SGD momentum must be >= 0, got \(momentum)")
        try require(dampening >= 0 && dampening <= 1, "SGD dampening must be in [0, 1], got \(dampening)")
        try require(!nesterov || (momentum > 0 && dampening == 0),
                    "Nesterov momentum needs momentum > 0 and dampening 0, got momentum \(momentum), dampening \(dampening)")
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    /// One momentum buffer when momentum is on; none for plain SGD.
    public var stateCount: Int { momentum != 0 ? 1 : 0 }

    public func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                       state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float) {
        update(param: param, grad: grad, state: state, step: step, lr: Double(lr), weightDecay: Double(weightDecay))
    }

    /// Updates `param` in place. `step` counts from 1; on step 1 the momentum buffer is set to the
    /// gradient, as torch creates it from the first gradient. Scalars are given in Double and rounded to
    /// fp32 where torch rounds them.
    public func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                       state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Double, weightDecay: Double) {
        checkBuffers(param: param, grad: grad, state: state, expectedStates: stateCount, rule: "SGD")
        let p = param.baseAddress!, g = grad.baseAddress!
        let decay = Float(weightDecay), negLR = Float(-lr), mu = Float(momentum)
        // torch: `buf.mul_(momentum).add_(g, alpha=1 - dampening)`, or `buf = g.clone()` on the first step.
        let keep: Float = step == 1 ? 0 : mu
        let take: Float = step == 1 ? 1 : Float(1 - dampening)
        let buffer = state.first?.baseAddress
        let hasMomentum = momentum != 0, nesterov = self.nesterov
        forEachLaneBlock(param.count) { i, n in
            var pv = loadLanes(p, i, n)
            let gv = loadLanes(g, i, n) + pv * decay
            var direction = gv
            if hasMomentum, let buffer {
                let bv = loadLanes(buffer, i, n) * keep + gv * take
                storeLanes(bv, buffer, i, n)
                direction = nesterov ? gv + bv * mu : bv
            }
            pv = pv + direction * negLR
            storeLanes(pv, p, i, n)
        }
    }
}

/// Stops with a message naming the rule when the buffers of one parameter disagree in size.
func checkBuffers(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                  state: [UnsafeMutableBufferPointer<Float>], expectedStates: Int, rule: String) {
    precondition(grad.count == param.count, "\(rule): gradient has \(grad.count) elements, parameter \(param.count)")
    precondition(state.count == expectedStates, "\(rule): expected \(expectedStates) state buffers, got \(state.count)")
    for s in state {
        precondition(s.count == param.count, "\(rule): state buffer has \(s.count) elements, parameter \(param.count)")
    }
}
