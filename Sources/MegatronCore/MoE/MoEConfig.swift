/// The mixture-of-experts part of a model (Megatron's `--num-experts` and `--moe-*` flags): which layers are
/// MoE, the experts' size, and how the router picks and balances them.
///
/// ```swift
/// var moe = MoEConfig(numExperts: 8, ffnHiddenSize: 256, layers: MoEConfig.pattern(frequency: 1, numLayers: 4))
/// moe.topk = 2
/// moe.loadBalancing = [.init(kind: .auxLoss, coefficient: 0.01)]
/// ```
public struct MoEConfig: Sendable, Equatable, Codable {
    /// How the router turns logits into scores (`--moe-router-score-function`).
    public enum ScoreFunction: String, Sendable, Codable, CaseIterable { case softmax, sigmoid }

    /// Which tokens an expert over capacity keeps (`--moe-token-drop-policy`).
    public enum DropPolicy: String, Sendable, Codable, CaseIterable {
        /// The tokens with the highest probabilities.
        case probs
        /// The earliest tokens.
        case position
    }

    /// One load-balancing loss and its coefficient (`--moe-router-load-balancing-type`, `--moe-aux-loss-coeff`).
    public struct LoadBalancingLoss: Sendable, Equatable, Codable {
        public enum Kind: String, Sendable, Codable, CaseIterable {
            /// Switch-style over the micro-batch (`aux_loss`), logged as `load_balancing_loss`.
            case auxLoss = "aux_loss"
            /// Per sequence, averaged over the batch (`seq_aux_loss`), logged as `seq_load_balancing_loss`.
            case seqAuxLoss = "seq_aux_loss"

            /// The name Megatron's log line and metrics tracker give the loss.
            public var loggedName: String { self == .auxLoss ? "load_balancing_loss" : "seq_load_balancing_loss" }
        }

        public var kind: Kind
        public var coefficient: Float

        public init(kind: Kind, coefficient: Float) {
            self.kind = kind
            self.coefficient = coefficient
        }
    }

    /// Per layer: true for a mixture-of-experts MLP, false for a dense one (`--moe-layer-freq`).
    public var layers: [Bool]
    public var numExperts: Int
    /// Each expert's hidden size (`--moe-ffn-hidden-size`).
    public var ffnHiddenSize: Int
    /// Experts per token (`--moe-router-topk`).
    public var topk: Int = 2
    public var scoreFunction: ScoreFunction = .softmax
    /// Softmax over all experts before the top-k, without renormalising (`--moe-router-pre-softmax`).
    public var preSoftmax = false
    /// Multiplies the top-k probabilities (`--moe-router-topk-scaling-factor`).
    public var topkScalingFactor: Float?
    /// Group-limited routing (`--moe-router-num-groups`, `--moe-router-group-topk`): experts in `numGroups`
    /// equal groups, each token choosing among the experts of its best `groupTopk` groups.
    public var numGroups: Int?
    public var groupTopk: Int?
    /// The load-balancing losses with a coefficient; empty for `none` or coefficient 0.
    public var loadBalancing: [LoadBalancingLoss] = []
    /// `--moe-z-loss-coeff`; nil: no z-loss.
    public var zLossCoefficient: Float?
    /// Aux-loss-free balancing (`--moe-router-enable-expert-bias`): a per-expert bias added to the scores for
    /// choosing experts only, nudged by `biasUpdateRate` toward the mean load after each step.
    public var expertBias = false
    public var biasUpdateRate: Float = 1e-3
    /// Tokens per expert capped at `ceil(tokens * topk / experts * factor)` (`--moe-expert-capacity-factor`);
    /// nil: dropless.
    public var capacityFactor: Double?
    public var dropPolicy: DropPolicy = .probs
    /// Every expert takes exactly its capacity, padding with unrouted tokens at probability 0
    /// (`--moe-pad-expert-input-to-capacity`).
    public var padToCapacity = false
    /// The size of the shared expert every token also goes through (`--moe-shared-expert-intermediate-size`);
    /// nil: none.
    public var sharedExpertIntermediateSize: Int?
    /// The shared expert's output scaled by a per-token sigmoid gate (Megatron's `moe_shared_expert_gate`, as
    /// Qwen2-MoE); nil (checkpoints written before it) or false: ungated.
    public var sharedExpertGate: Bool?

    public init(numExperts: Int, ffnHiddenSize: Int, layers: [Bool]) {
        self.numExperts = numExperts
        self.ffnHiddenSize = ffnHiddenSize
        self.layers = layers
    }

    /// Megatron's integer `--moe-layer-freq N`: layer i (0-based) is MoE iff `i % N == 0`.
    public static func pattern(frequency: Int, numLayers: Int) -> [Bool] {
        (0..<numLayers).map { $0 % frequency == 0 }
    }

    /// The coefficient of the load-balancing loss `kind`, 0 when it is off.
    public func coefficient(_ kind: LoadBalancingLoss.Kind) -> Float {
        loadBalancing.first { $0.kind == kind }?.coefficient ?? 0
    }

    func validate(numLayers: Int) throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try require(layers.count == numLayers,
                    "moe_layer_freq gives \(layers.count) layers, but the model has num_layers \(numLayers)")
        try require(numExperts > 0, "num_experts must be positive, got \(numExperts)")
        try require(ffnHiddenSize > 0, "moe_ffn_hidden_size must be positive, got \(ffnHiddenSize)")
        try require(topk > 0 && topk <= numExperts,
                    "moe_router_topk (\(topk)) must lie in 1...num_experts (\(numExperts))")
        try require(topk > 1 || scoreFunction != .softmax || preSoftmax,
                    "moe_router_topk 1 with softmax scores needs moe_router_pre_softmax (as in Megatron)")
        try require((numGroups == nil) == (groupTopk == nil),
                    "group-limited routing needs both moe_router_num_groups and moe_router_group_topk")
        if let numGroups, let groupTopk {
            try require(numGroups > 0 && numExperts % numGroups == 0,
                        "num_experts (\(numExperts)) must be a multiple of moe_router_num_groups (\(numGroups))")
            try require(groupTopk > 0 && groupTopk <= numGroups && topk % groupTopk == 0,
                        "moe_router_group_topk (\(groupTopk)) must lie in 1...moe_router_num_groups (\(numGroups)) and divide moe_router_topk (\(topk))")
            try require(topk / groupTopk <= numExperts / numGroups,
                        "moe_router_topk / moe_router_group_topk (\(topk / groupTopk)) exceeds the experts per group (\(numExperts / numGroups))")
        }
        try require(!expertBias || scoreFunction == .sigmoid,
                    "moe_router_enable_expert_bias needs moe_router_score_function sigmoid (as in Megatron)")
        try require(capacityFactor.map { $0 > 0 } ?? !padToCapacity,
                    "moe_pad_expert_input_to_capacity needs a positive moe_expert_capacity_factor")
        try require(sharedExpertIntermediateSize.map { $0 > 0 } ?? true,
                    "moe_shared_expert_intermediate_size must be positive")
        try require(sharedExpertGate != true || sharedExpertIntermediateSize != nil,
                    "moe_shared_expert_gate needs a shared expert (moe_shared_expert_intermediate_size)")
    }
}
