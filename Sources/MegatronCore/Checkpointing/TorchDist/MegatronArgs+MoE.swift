/// The mixture-of-experts fields of Megatron-LM's checkpoint `args` (`--num-experts`, `--moe-*`, as
/// `--use-checkpoint-args` copies them), written from an `MoEConfig` and read back into one.
extension MegatronArgs {
    /// The args fields describing `moe` (none for a dense model).
    static func moeFields(_ moe: MoEConfig?) -> [(String, PickleValue)] {
        guard let m = moe else { return [("num_experts", .none)] }
        let optionalInt = { (v: Int?) in v.map(PickleValue.int) ?? .none }
        // An int frequency where the pattern is one (Megatron stacks the layers only then), else the 0/1 list.
        let frequency = (1...max(1, m.layers.count)).first { MoEConfig.pattern(frequency: $0, numLayers: m.layers.count) == m.layers }
        return [
            ("num_experts", .int(m.numExperts)), ("moe_ffn_hidden_size", .int(m.ffnHiddenSize)), ("moe_router_topk", .int(m.topk)),
            ("moe_layer_freq", frequency.map(PickleValue.int) ?? .list(m.layers.map { .int($0 ? 1 : 0) })),
            ("moe_router_score_function", .string(m.scoreFunction.rawValue)), ("moe_router_pre_softmax", .bool(m.preSoftmax)),
            ("moe_router_topk_scaling_factor", m.topkScalingFactor.map { .float(Double($0)) } ?? .none),
            ("moe_router_num_groups", optionalInt(m.numGroups)), ("moe_router_group_topk", optionalInt(m.groupTopk)),
            ("moe_router_load_balancing_type", m.loadBalancing.isEmpty ? .string("none") : .list(m.loadBalancing.map { .string($0.kind.rawValue) })),
            ("moe_aux_loss_coeff", m.loadBalancing.isEmpty ? .float(0) : .list(m.loadBalancing.map { .float(Double($0.coefficient)) })),
            ("moe_z_loss_coeff", m.zLossCoefficient.map { .float(Double($0)) } ?? .none),
            ("moe_router_enable_expert_bias", .bool(m.expertBias)), ("moe_router_bias_update_rate", .float(Double(m.biasUpdateRate))),
            ("moe_expert_capacity_factor", m.capacityFactor.map(PickleValue.float) ?? .none),
            ("moe_token_drop_policy", .string(m.dropPolicy.rawValue)), ("moe_pad_expert_input_to_capacity", .bool(m.padToCapacity)),
            ("moe_shared_expert_intermediate_size", optionalInt(m.sharedExpertIntermediateSize)),
            ("moe_shared_expert_gate", .bool(m.sharedExpertGate ?? false)),
        ]
    }

    /// The `MoEConfig` Megatron's `args` describe for a `numLayers`-layer model with MLP size `ffnHiddenSize`; nil
    /// without `num_experts`. Values this build does not model are errors naming the field.
    static func moe(_ args: PickleValue, numLayers: Int, ffnHiddenSize: Int, source: String) throws -> MoEConfig? {
        guard let experts = args.attribute("num_experts")?.intValue else { return nil }
        func field(_ name: String) -> PickleValue? { args.attribute(name).flatMap { $0.isNone ? nil : $0 } }
        func invalid(_ name: String, _ why: String) -> CheckpointError { CheckpointError("\(source): args.\(name) \(why)") }
        var moe = MoEConfig(numExperts: experts, ffnHiddenSize: field("moe_ffn_hidden_size")?.intValue ?? ffnHiddenSize,
                            layers: try layers(field("moe_layer_freq"), numLayers: numLayers, invalid: invalid))
        moe.topk = field("moe_router_topk")?.intValue ?? 2
        if let name = field("moe_router_score_function")?.stringValue {
            guard let score = MoEConfig.ScoreFunction(rawValue: name) else { throw invalid("moe_router_score_function", "is '\(name)', which this build does not route with") }
            moe.scoreFunction = score
        }
        moe.preSoftmax = field("moe_router_pre_softmax")?.boolValue ?? false
        moe.topkScalingFactor = field("moe_router_topk_scaling_factor")?.doubleValue.map(Float.init)
        (moe.numGroups, moe.groupTopk) = (field("moe_router_num_groups")?.intValue, field("moe_router_group_topk")?.intValue)
        moe.loadBalancing = try loadBalancing(field("moe_router_load_balancing_type"), field("moe_aux_loss_coeff"), invalid: invalid)
        moe.zLossCoefficient = field("moe_z_loss_coeff")?.doubleValue.map(Float.init)
        moe.expertBias = field("moe_router_enable_expert_bias")?.boolValue ?? false
        moe.biasUpdateRate = field("moe_router_bias_update_rate")?.doubleValue.map(Float.init) ?? moe.biasUpdateRate
        moe.capacityFactor = field("moe_expert_capacity_factor")?.doubleValue
        if let policy = field("moe_token_drop_policy")?.stringValue {
            guard let drop = MoEConfig.DropPolicy(rawValue: policy) else { throw invalid("moe_token_drop_policy", "is '\(policy)'") }
            moe.dropPolicy = drop
        }
        moe.padToCapacity = field("moe_pad_expert_input_to_capacity")?.boolValue ?? false
        moe.sharedExpertIntermediateSize = field("moe_shared_expert_intermediate_size")?.intValue
        if moe.sharedExpertIntermediateSize != nil, field("moe_shared_expert_gate")?.boolValue == true { moe.sharedExpertGate = true }
        return moe
    }

    /// `moe_layer_freq`: an int N (layer i is MoE iff i % N == 0) or a 0/1 list; absent means every layer.
    private static func layers(_ value: PickleValue?, numLayers: Int, invalid: (String, String) -> CheckpointError) throws -> [Bool] {
        guard let value else { return MoEConfig.pattern(frequency: 1, numLayers: numLayers) }
        if let n = value.intValue, n > 0 { return MoEConfig.pattern(frequency: n, numLayers: numLayers) }
        guard let list = value.elements?.compactMap(\.intValue), list.count == value.elements?.count else {
            throw invalid("moe_layer_freq", "is neither a positive integer nor a list of 0/1")
        }
        return list.map { $0 != 0 }
    }

    /// `moe_router_load_balancing_type` (a name or a list) with `moe_aux_loss_coeff` (a number or a list); kinds
    /// with coefficient 0, and `none`, are dropped.
    private static func loadBalancing(_ types: PickleValue?, _ coefficients: PickleValue?,
                                      invalid: (String, String) -> CheckpointError) throws -> [MoEConfig.LoadBalancingLoss] {
        let names = types.map { $0.elements?.compactMap(\.stringValue) ?? [$0.stringValue].compactMap { $0 } } ?? ["aux_loss"]
        let values = coefficients.map { $0.elements?.compactMap(\.doubleValue) ?? [$0.doubleValue].compactMap { $0 } } ?? [0]
        var out: [MoEConfig.LoadBalancingLoss] = []
        for (i, name) in names.enumerated() where name != "none" {
            guard let kind = MoEConfig.LoadBalancingLoss.Kind(rawValue: name) else {
                throw invalid("moe_router_load_balancing_type", "holds '\(name)', which this build does not balance with")
            }
            let coefficient = Float(values.indices.contains(i) ? values[i] : values.last ?? 0)
            if coefficient != 0 { out.append(.init(kind: kind, coefficient: coefficient)) }
        }
        return out
    }
}
