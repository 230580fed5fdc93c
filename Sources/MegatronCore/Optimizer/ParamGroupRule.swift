/// What a parameter group changes from the run's schedule: Megatron's `ParamGroupOverride`.
/// A nil field follows the scheduler's value.
public struct ParamGroupOverride: Hashable {
    public var maxLR: Double?
    public var minLR: Double?
    public var startWD: Double?
    public var endWD: Double?
    /// Multiplies the scheduled weight decay (Megatron: `wd_mult`; 0 turns weight decay off).
    public var wdMult: Double?
    /// Multiplies the scheduled learning rate. Megatron before core 0.14 scaled by `lr_mult`; it now sets
    /// `max_lr` / `min_lr` instead and keeps `lr_mult` at 1. Kept as a hook; 1 when nil.
    public var lrMult: Double?

    public init(maxLR: Double? = nil, minLR: Double? = nil, startWD: Double? = nil, endWD: Double? = nil,
                wdMult: Double? = nil, lrMult: Double? = nil) {
        self.maxLR = maxLR
        self.minLR = minLR
        self.startWD = startWD
        self.endWD = endWD
        self.wdMult = wdMult
        self.lrMult = lrMult
    }

    /// The set fields under Megatron's key names, sorted by key: how Megatron orders groups.
    var megatronItems: [(key: String, value: Double)] {
        let all: [(String, Double?)] = [("end_wd", endWD), ("lr_mult", lrMult), ("max_lr", maxLR),
                                        ("min_lr", minLR), ("start_wd", startWD), ("wd_mult", wdMult)]
        return all.compactMap { key, value in value.map { (key, $0) } }
    }

    /// Megatron's `default_config`: the group follows the run's learning-rate schedule (no key with
    /// "lr" in it is overridden), so its lr is the one logged.
    public var usesDefaultLRSchedule: Bool { !megatronItems.contains { $0.key.contains("lr") } }

    /// The fields of both; a field set in both to different values is an error (Megatron's
    /// `combine_param_group_overrides`).
    func combined(with other: ParamGroupOverride) throws -> ParamGroupOverride {
        func merge(_ a: Double?, _ b: Double?, _ key: String) throws -> Double? {
            if let a, let b, a != b { throw OptimizerSetupError("Conflicting overrides for \(key): \(a) and \(b)") }
            return a ?? b
        }
        return try ParamGroupOverride(
            maxLR: merge(maxLR, other.maxLR, "max_lr"), minLR: merge(minLR, other.minLR, "min_lr"),
            startWD: merge(startWD, other.startWD, "start_wd"), endWD: merge(endWD, other.endWD, "end_wd"),
            wdMult: merge(wdMult, other.wdMult, "wd_mult"), lrMult: merge(lrMult, other.lrMult, "lr_mult"))
    }
}

/// One parameter as the grouping sees it.
public struct ParamDescriptor {
    public var name: String
    public var shape: [Int]
    /// Embedding or output-layer weight: these take `decoupledLR` (Megatron's `is_embedding_or_output_parameter`).
    public var isEmbeddingOrOutput: Bool
    /// Expert-parallel (MoE) parameter: kept in groups of its own, as Megatron keys groups on it.
    public var isExpertParallel: Bool

    public init(name: String, shape: [Int], isEmbeddingOrOutput: Bool = false, isExpertParallel: Bool = false) {
        self.name = name
        self.shape = shape
        self.isEmbeddingOrOutput = isEmbeddingOrOutput
        self.isExpertParallel = isExpertParallel
    }
}

/// A parameter group: the indices (into the list given to `ParamGroupRule.groups`) of its parameters.
public struct ParamGroupSpec {
    public var override: ParamGroupOverride
    public var isExpertParallel: Bool
    public var parameterIndices: [Int]
}

/// Megatron's default parameter grouping (`get_standard_config_overrides` + `_get_param_groups`):
/// biases (`*.bias`) and rank-1 parameters (norm weights) get `wd_mult = 0`; with
/// `applyWeightDecayToQKLayerNorm`, q/k layer-norm weights keep their weight decay; with `decoupledLR`,
/// embedding and output weights get their own `max_lr` (and `min_lr`). `extraRules` are the hooks for
/// further lr / wd multipliers; every matching rule's override is merged.
///
/// ```swift
/// let groups = try ParamGroupRule().groups(model.namedParameters().map { ParamDescriptor(name: $0.0, shape: $0.1.shape) })
/// // groups[0]: weights (no override), groups[1]: biases and norms (wdMult 0)
/// ```
public struct ParamGroupRule {
    /// An override applied to every parameter `matches` accepts.
    public struct Rule {
        public var matches: (ParamDescriptor) -> Bool
        public var override: ParamGroupOverride

        public init(matches: @escaping (ParamDescriptor) -> Bool, override: ParamGroupOverride) {
            self.matches = matches
            self.override = override
        }
    }

    public var applyWeightDecayToQKLayerNorm: Bool
    public var decoupledLR: Double?
    public var decoupledMinLR: Double?
    public var extraRules: [Rule]

    public init(applyWeightDecayToQKLayerNorm: Bool = false, decoupledLR: Double? = nil,
                decoupledMinLR: Double? = nil, extraRules: [Rule] = []) {
        self.applyWeightDecayToQKLayerNorm = applyWeightDecayToQKLayerNorm
        self.decoupledLR = decoupledLR
        self.decoupledMinLR = decoupledMinLR
        self.extraRules = extraRules
    }

    /// True for parameters Megatron exempts from weight decay.
    public func skipsWeightDecay(_ p: ParamDescriptor) -> Bool {
        let candidate = p.shape.count == 1 || p.name.hasSuffix(".bias")
        if !applyWeightDecayToQKLayerNorm { return candidate }
        return candidate && !(p.name.contains("q_layernorm.") || p.name.contains("k_layernorm."))
    }

    /// The merged override of one parameter; nil when no rule matches it.
    public func override(for p: ParamDescriptor) throws -> ParamGroupOverride? {
        var matched: [ParamGroupOverride] = []
        if skipsWeightDecay(p) { matched.append(ParamGroupOverride(wdMult: 0)) }
        if let decoupledLR, p.isEmbeddingOrOutput {
            matched.append(ParamGroupOverride(maxLR: decoupledLR, minLR: decoupledMinLR))
        }
        matched += extraRules.filter { $0.matches(p) }.map(\.override)
        guard var result = matched.first else { return nil }
        for next in matched.dropFirst() { result = try result.combined(with: next) }
        return result
    }

    /// Parameters with the same merged override (and expert-parallel flag) share a group. Groups come in
    /// Megatron's order: no override first, then by the sorted (key, value) items; within a group,
    /// parameters keep their order.
    public func groups(_ parameters: [ParamDescriptor]) throws -> [ParamGroupSpec] {
        var groups: [ParamGroupSpec] = []
        for (index, p) in parameters.enumerated() {
            let override = try self.override(for: p) ?? ParamGroupOverride()
            if let g = groups.firstIndex(where: { $0.override == override && $0.isExpertParallel == p.isExpertParallel }) {
                groups[g].parameterIndices.append(index)
            } else {
                groups.append(ParamGroupSpec(override: override, isExpertParallel: p.isExpertParallel, parameterIndices: [index]))
            }
        }
        // Python's sort is stable: equal keys keep the order in which their first parameter came.
        return groups.enumerated().sorted { a, b in
            Self.megatronPrecedes(a.element.override, b.element.override) ?? (a.offset < b.offset)
        }.map(\.element)
    }

    /// Python's `sorted(keys, key=lambda x: (x[0] is not None, x[0]))` on the override items; nil when equal.
    private static func megatronPrecedes(_ a: ParamGroupOverride, _ b: ParamGroupOverride) -> Bool? {
        let (x, y) = (a.megatronItems, b.megatronItems)
        if x.isEmpty != y.isEmpty { return x.isEmpty }
        for (u, v) in zip(x, y) where u.key != v.key || u.value != v.value {
            return u.key != v.key ? u.key < v.key : u.value < v.value
        }
        return x.count == y.count ? nil : x.count < y.count
    }
}
