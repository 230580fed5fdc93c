import MegatronAutograd
import MegatronCUDA
import MegatronTensor

/// How one optimizer (SGD, Adam, AdamW) changes fp32 parameters from fp32 gradients and its state buffers.
public protocol UpdateRule {
    /// fp32 state buffers kept per parameter (momentum: 1; Adam: 2).
    var stateCount: Int { get }
    /// Updates `param` in place; `step` counts from 1.
    func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float)
}

/// Parameters that share the scheduler's per-group overrides (Megatron's `param_groups`).
public struct ParamGroup {
    public var parameters: [(name: String, tensor: Tensor)]
    public var override: ParamGroupOverride

    public init(parameters: [(name: String, tensor: Tensor)], override: ParamGroupOverride = ParamGroupOverride()) {
        self.parameters = parameters
        self.override = override
    }

    /// Megatron's default grouping of `parameters` (no weight decay on biases and norm weights, ...);
    /// `embeddingOrOutput` names the parameters `rule.decoupledLR` applies to.
    public static func megatronDefault(_ parameters: [(String, Tensor)], rule: ParamGroupRule = ParamGroupRule(),
                                       embeddingOrOutput: Set<String> = []) throws -> [ParamGroup] {
        let specs = try rule.groups(parameters.map {
            ParamDescriptor(name: $0.0, shape: $0.1.shape, isEmbeddingOrOutput: embeddingOrOutput.contains($0.0))
        })
        return specs.map { spec in
            ParamGroup(parameters: spec.parameterIndices.map { (name: parameters[$0].0, tensor: parameters[$0].1) },
                       override: spec.override)
        }
    }
}

/// Megatron's optimizer wrapper: fp32 main gradients, fp32 master weights for bf16 / fp16 parameters,
/// gradient clipping by global L2 norm, loss-scale handling and skipped steps on inf/NaN.
///
/// ```swift
/// let opt = MixedPrecisionOptimizer(groups: try ParamGroup.megatronDefault(model.namedParameters()),
///                                   rule: try AdamRule.adamW())
/// opt.zeroGrad()
/// loss.backward()
/// let report = opt.step(scheduler: scheduler, clipGrad: 1.0)
/// ```
public final class MixedPrecisionOptimizer {
    public let groups: [ParamGroup]
    public let rule: UpdateRule
    /// Updates taken so far (skipped steps excluded).
    public private(set) var stepCount = 0
    /// fp32 master copy per parameter (the parameter itself when it is fp32).
    private(set) var masters: [Tensor] = []
    private var states: [[Tensor]] = []

    /// Without `ownsMainGrads` the parameters' `.grad` tensors are someone else's buffers (views into
    /// `DistributedDataParallel`'s grad buffer): none are allocated here and `zeroGrad` zeroes them in place.
    /// `mainGradDType` is the dtype of the main grads made here: fp32, or the parameters' bf16 to accumulate
    /// gradients in it (`--grad-reduce-in-bf16` on one rank); the update always reads fp32 copies.
    public init(groups: [ParamGroup], rule: UpdateRule, ownsMainGrads: Bool = true, mainGradDType: DType = .float32) {
        self.groups = groups
        self.rule = rule
        self.ownsMainGrads = ownsMainGrads
        for (_, p) in groups.flatMap(\.parameters) {
            precondition(p.device == .cpu || rule is DeviceUpdateRule,
                         "\(type(of: rule)) has no tensor-op update; parameters on \(p.device) need a DeviceUpdateRule")
            masters.append(p.dtype == .float32 ? p : Self.fp32Copy(p))
            states.append((0..<rule.stateCount).map { _ in Tensor.zeros(p.shape, device: p.device) })
        }
        if ownsMainGrads {
            for (_, p) in groups.flatMap(\.parameters) {
                let (shape, device) = (p.shape, p.device)
                p.autograd?.mainGradFactory = { Tensor.zeros(shape, dtype: mainGradDType, device: device) }
            }
        }
    }

    /// Whether this optimizer makes the parameters' main grads (each when backward first reaches the
    /// parameter, through `AutogradMeta.mainGradFactory`; `zeroGrad` drops them).
    public let ownsMainGrads: Bool

    static func fp32Copy(_ t: Tensor) -> Tensor {
        let out = Tensor.zeros(t.shape, device: t.device)
        Ops.copy(t, into: out)
        return out
    }

    /// Every parameter of every group, in order; built on each access, so read it once outside loops.
    public var parameters: [Tensor] { groups.flatMap { $0.parameters.map(\.tensor) } }

    /// Drops every parameter's fp32 main grad; the next backward makes a zeroed one when it reaches the
    /// parameter and accumulates into it in fp32. Without `ownsMainGrads`, zeroes the borrowed buffers in place.
    public func zeroGrad() {
        guard ownsMainGrads else {
            for p in parameters {
                precondition(p.grad != nil, "ownsMainGrads is off but a parameter has no .grad buffer")
                Ops.zero(p.grad!)
            }
            return
        }
        for p in parameters { p.grad = nil }
    }

    /// What one `step` did.
    public struct StepReport {
        /// Global L2 norm of the (unscaled) gradients before clipping; infinite when the step was skipped.
        public var gradNorm: Float
        /// False when an inf/NaN gradient made the step be skipped.
        public var updated: Bool
    }

    /// Unscales the gradients by `1 / lossScale`, skips the update if any is inf/NaN, clips to `clipGrad`
    /// (0: no clipping) and applies the rule with each group's learning rate and weight decay from `scheduler`.
    @discardableResult
    public func step(scheduler: OptimizerParamScheduler, clipGrad: Float = 0, lossScale: Float = 1) -> StepReport {
        // Without groups no collective runs, so nothing can throw.
        return try! step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale, gradStats: GradientStatsGroups())
    }

    /// `step` for gradients spread over ranks: the norm and the inf/NaN check span `gradStats`' groups
    /// (e.g. the model-parallel group), so every rank clips by the same global norm and skips together.
    @discardableResult
    public func step(scheduler: OptimizerParamScheduler, clipGrad: Float = 0, lossScale: Float = 1,
                     gradStats: GradientStatsGroups) throws -> StepReport {
        if parameters.first?.device ?? .cpu != .cpu {
            if let adam = FusedAdamW.rule(rule, parameterTypes: parameters.map(\.dtype)) {
                return try fusedAdamWStep(adam, scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale, gradStats: gradStats)
            }
            return try stepWithTensorOps(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale, gradStats: gradStats)
        }
        let grads = parameters.map { $0.grad ?? Tensor.zeros($0.shape) }.map { $0.cast(to: .float32).contiguous() }
        let buffers = grads.map { UnsafeMutableBufferPointer(start: $0.pointer(as: Float.self), count: $0.count) }
        let localNonFinite = lossScale != 1
            ? NonFiniteGradients.unscaleAndCheck(buffers, inverseScale: 1 / lossScale)
            : NonFiniteGradients.containsNonFinite(buffers.map { UnsafeBufferPointer($0) })
        let names = groups.flatMap(\.parameters).map(\.name)
        let counted = zip(names, buffers).filter { gradStats.countsInNorm($0.0) }.map { UnsafeBufferPointer($0.1) }
        let localSquares = counted.reduce(0.0) { $0 + GradientNorm.sumOfSquares($1) }
        let total = try gradStats.reduce(squares: localSquares, nonFinite: localNonFinite, device: .cpu)
        if total.nonFinite { return StepReport(gradNorm: .infinity, updated: false) }
        let norm = total.squares.squareRoot()
        if clipGrad > 0 { _ = GradientNorm.clip(buffers, maxNorm: Double(clipGrad), totalNorm: norm) }
        stepCount += 1
        var index = 0
        for (g, group) in groups.enumerated() {
            let lr = Float(scheduler.learningRate(group: g)), wd = Float(scheduler.weightDecay(group: g))
            for (_, p) in group.parameters {
                apply(index, grad: grads[index], lr: lr, weightDecay: wd)
                if p.dtype != .float32 { withoutGrad { Ops.copy(masters[index], into: p) } }
                index += 1
            }
        }
        return StepReport(gradNorm: Float(norm), updated: true)
    }

    /// The step on the parameters' device for rules without a multi-tensor kernel (SGD; Adam over fp16
    /// parameters; AdamW over fp32 / bf16 takes `fusedAdamWStep`): tensor ops and one host sync for the norm,
    /// which spans `gradStats`' ranks (parameters duplicated across tensor-parallel ranks count on rank 0 only).
    func stepWithTensorOps(scheduler: OptimizerParamScheduler, clipGrad: Float, lossScale: Float,
                           gradStats: GradientStatsGroups) throws -> StepReport {
        let parameters = self.parameters
        let device = parameters.first?.device ?? .cpu
        return try withoutGrad {
            var grads = parameters.map { p in (p.grad ?? Tensor.zeros(p.shape, device: p.device)).cast(to: .float32) }
            if lossScale != 1 { grads = grads.map { Ops.binary($0, Tensor(scalar: 1 / lossScale), .mul) } }
            func sumOfSquares(_ tensors: [Tensor]) -> Tensor {
                let each = tensors.map { Ops.reduce(Ops.binary($0, $0, .mul), dims: [], .sum).reshaped([1]) }
                return each.isEmpty ? Tensor.zeros([1], device: device) : Ops.reduce(Ops.concat(each, dim: 0), dims: [], .sum).reshaped([1])
            }
            let names = groups.flatMap(\.parameters).map(\.name)
            let counted = zip(names, grads).filter { gradStats.countsInNorm($0.0) }.map(\.1)
            // Every gradient decides inf/NaN; those counted on this rank make its share of the norm.
            let all = sumOfSquares(grads)
            let local = Ops.concat([all, counted.count == grads.count ? all : sumOfSquares(counted)], dim: 0).floats()
            let total = try gradStats.reduce(squares: Double(local[1]), nonFinite: !local[0].isFinite, device: device)
            let norm = total.squares.squareRoot()
            guard !total.nonFinite, norm.isFinite else { return StepReport(gradNorm: .infinity, updated: false) }
            let coefficient = GradientNorm.clipCoefficient(maxNorm: Double(clipGrad), totalNorm: norm)
            if clipGrad > 0 && coefficient < 1 {
                grads = grads.map { Ops.binary($0, Tensor(scalar: Float(coefficient)), .mul) }
            }
            stepCount += 1
            let deviceRule = rule as! DeviceUpdateRule
            var index = 0
            for (g, group) in groups.enumerated() {
                let lr = Float(scheduler.learningRate(group: g)), wd = Float(scheduler.weightDecay(group: g))
                for (_, p) in group.parameters {
                    deviceRule.update(param: masters[index], grad: grads[index], state: states[index],
                                      step: stepCount, lr: lr, weightDecay: wd)
                    if p.dtype != .float32 { Ops.copy(masters[index], into: p) }
                    index += 1
                }
            }
            return StepReport(gradNorm: Float(norm), updated: true)
        }
    }

    /// The multi-tensor AdamW step (`FusedAdamW`) over whole parameters; parameters duplicated across
    /// tensor-parallel ranks count in the norm on TP rank 0 only (`gradStats`).
    private func fusedAdamWStep(_ adam: AdamRule, scheduler: OptimizerParamScheduler, clipGrad: Float,
                                lossScale: Float, gradStats: GradientStatsGroups) throws -> StepReport {
        // `parameters` is rebuilt on every access: read it once (indexing it per tensor would make this
        // step quadratic in the tensor count).
        let parameters = self.parameters
        let grads = withoutGrad {
            parameters.map { p in (p.grad ?? Tensor.zeros(p.shape, device: p.device)).cast(to: .float32).contiguous() }
        }
        let names = groups.flatMap(\.parameters).map(\.name)
        var operands: [FusedAdamW.Operands] = []
        var first = 0
        for group in groups {
            let range = first..<(first + group.parameters.count)
            first = range.upperBound
            operands.append(FusedAdamW.Operands(masters: Array(masters[range]), grads: Array(grads[range]),
                                                expAvg: range.map { states[$0][0] }, expAvgSq: range.map { states[$0][1] },
                                                copies: range.map { parameters[$0].dtype == .float32 ? nil : parameters[$0] }))
        }
        let fused = FusedAdamW(rule: adam, groups: operands, all: grads,
                               counted: zip(names, grads).filter { gradStats.countsInNorm($0.0) }.map(\.1))
        let report = try fused.run(step: stepCount + 1, scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale,
                                   gradStats: gradStats)
        if report.updated { stepCount += 1 }
        return report
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
}
