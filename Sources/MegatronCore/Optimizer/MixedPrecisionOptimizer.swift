import MegatronAutograd
import MegatronTensor

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
    /// (e.g. the model-parallel group), so every rank clips by the same global norm and skips together;
    /// parameters duplicated across tensor-parallel ranks count in the norm on TP rank 0 only.
    @discardableResult
    public func step(scheduler: OptimizerParamScheduler, clipGrad: Float = 0, lossScale: Float = 1,
                     gradStats: GradientStatsGroups) throws -> StepReport {
        // `parameters` is rebuilt on every access: read it once (indexing it per tensor would make this
        // step quadratic in the tensor count).
        let parameters = self.parameters
        let grads = withoutGrad {
            parameters.map { p in (p.grad ?? Tensor.zeros(p.shape, device: p.device)).cast(to: .float32).madeContiguous() }
        }
        let names = groups.flatMap(\.parameters).map(\.name)
        let counted = zip(names, grads).filter { gradStats.countsInNorm($0.0) }.map(\.1)
        let outcome = try GradientClipping(gradStats: gradStats).check(all: grads, counted: counted, lossScale: lossScale,
                                                                        clipGrad: clipGrad)
        if outcome.skip { return StepReport(gradNorm: outcome.gradNorm, updated: false) }
        stepCount += 1
        let backend = updateBackend ?? UpdateBackend.choose(for: rule, on: parameters.first?.device ?? .cpu)
        var first = 0
        let operands = groups.map { group in
            var operands = UpdateOperands()
            for i in first..<(first + group.parameters.count) {
                operands.append(master: masters[i], grad: grads[i], state: states[i],
                                copy: parameters[i].dtype == .float32 ? nil : parameters[i])
            }
            first += group.parameters.count
            return operands
        }
        rule.step(operands, step: stepCount, scheduler: scheduler, gradientScale: outcome.gradientScale, backend: backend)
        return StepReport(gradNorm: outcome.gradNorm, updated: true)
    }

    /// Where the update runs; nil: chosen from the parameters' device. Tests set `.tensorOps` to run the
    /// device path on the CPU.
    var updateBackend: UpdateBackend?

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
}
