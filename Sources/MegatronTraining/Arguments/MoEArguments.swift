import MegatronCore
import MegatronParallel

extension PretrainArguments {
    /// The mixture of experts `--num-experts` and the `--moe-*` flags ask for, with Megatron's checks; nil
    /// without `--num-experts` (the `--moe-*` flags are then unused, as in Megatron).
    func moeConfig() throws -> MoEConfig? {
        guard let numExperts else { return nil }
        guard tensorModelParallelSize == 1 || sequenceParallel else {
            throw ArgumentError("--num-experts with --tensor-model-parallel-size \(tensorModelParallelSize) needs --sequence-parallel (as in Megatron)")
        }
        var moe = MoEConfig(numExperts: numExperts, ffnHiddenSize: moeFFNHiddenSize ?? resolvedFFNHiddenSize,
                            layers: try moeLayers())
        moe.topk = moeRouterTopk
        moe.scoreFunction = MoEConfig.ScoreFunction(rawValue: moeRouterScoreFunction) ?? .softmax
        moe.preSoftmax = moeRouterPreSoftmax
        moe.topkScalingFactor = moeRouterTopkScalingFactor
        (moe.numGroups, moe.groupTopk) = (moeRouterNumGroups, moeRouterGroupTopk)
        moe.loadBalancing = try loadBalancingLosses()
        moe.zLossCoefficient = moeZLossCoeff
        moe.expertBias = moeRouterEnableExpertBias
        moe.biasUpdateRate = moeRouterBiasUpdateRate
        moe.capacityFactor = try moeExpertCapacityFactor.map { text in
            guard let factor = Double(text), factor > 0 else {
                throw ArgumentError("--moe-expert-capacity-factor needs a positive number, got '\(text)'")
            }
            return factor
        }
        moe.dropPolicy = MoEConfig.DropPolicy(rawValue: moeTokenDropPolicy) ?? .probs
        moe.padToCapacity = moePadExpertInputToCapacity
        moe.sharedExpertIntermediateSize = moeSharedExpertIntermediateSize
        if moeSharedExpertOverlap, moeSharedExpertIntermediateSize != nil, moeTokenDispatcherType != "alltoall" {
            throw ArgumentError("--moe-shared-expert-overlap works with the alltoall (or flex) token dispatcher only (as in Megatron), "
                + "got --moe-token-dispatcher-type \(moeTokenDispatcherType)")
        }
        // As in Megatron, the gate only takes effect on a shared expert.
        if moeSharedExpertGate && moeSharedExpertIntermediateSize != nil { moe.sharedExpertGate = true }
        return moe
    }

    /// `--moe-router-load-balancing-type` (Megatron's default `aux_loss`) paired with `--moe-aux-loss-coeff`
    /// (default 0: no loss); `none` or a zero coefficient adds nothing.
    private func loadBalancingLosses() throws -> [MoEConfig.LoadBalancingLoss] {
        let kinds = moeRouterLoadBalancingType ?? ["aux_loss"]
        let coefficients = try (moeAuxLossCoeff ?? ["0.0"]).map { text -> Float in
            guard let value = Float(text), value.isFinite, value >= 0 else {
                throw ArgumentError("--moe-aux-loss-coeff needs non-negative numbers, got '\(text)'")
            }
            return value
        }
        guard kinds.count == coefficients.count || (kinds.count == 1 && coefficients.count == 1) else {
            throw ArgumentError("--moe-router-load-balancing-type lists \(kinds.count) types but --moe-aux-loss-coeff "
                + "\(coefficients.count) coefficients; give one per type")
        }
        var losses: [MoEConfig.LoadBalancingLoss] = []
        for (kind, coefficient) in zip(kinds, coefficients) {
            switch kind {
            case "none": continue
            case "aux_loss", "seq_aux_loss":
                if coefficient > 0 { losses.append(.init(kind: .init(rawValue: kind)!, coefficient: coefficient)) }
            case "global_aux_loss", "sinkhorn", "quantile_balancing":
                throw UnsupportedFeature(feature: "MoE load balancing other than aux_loss, seq_aux_loss, none",
                                         usage: "--moe-router-load-balancing-type \(kind)")
            default:
                throw ArgumentError("--moe-router-load-balancing-type must be aux_loss, seq_aux_loss, global_aux_loss, "
                    + "sinkhorn, quantile_balancing or none, got '\(kind)'")
            }
        }
        return losses
    }

    /// Per layer, whether `--moe-layer-freq` makes it MoE: an integer N makes layer i MoE iff `i % N == 0`; a
    /// list (Python's syntax) gives 1 (MoE) or 0 (dense) per layer. Every layer without the flag.
    private func moeLayers() throws -> [Bool] {
        guard let text = moeLayerFreq else { return MoEConfig.pattern(frequency: 1, numLayers: numLayers) }
        return try LayerPatternExpression.layers(text, flag: "--moe-layer-freq", numLayers: numLayers, one: "MoE", zero: "dense") {
            MoEConfig.pattern(frequency: $0, numLayers: numLayers)
        }
    }
}

extension PretrainArguments {
    /// The MoE items of the log line, in Megatron's order (`training_log`'s `track_names`). As there, a single
    /// `--moe-router-load-balancing-type` is a string tested by substring, so `seq_aux_loss` also shows a zero
    /// `load_balancing_loss`; a type whose coefficient is 0 shows zeros.
    var moeLoggedLossNames: [String] {
        guard numExperts != nil else { return [] }
        let types = moeRouterLoadBalancingType ?? ["aux_loss"]
        let has: (String) -> Bool = { name in types.count == 1 ? types[0].contains(name) : types.contains(name) }
        var names: [String] = []
        if has("aux_loss") { names.append("load_balancing_loss") }
        if has("seq_aux_loss") { names.append("seq_load_balancing_loss") }
        if moeZLossCoeff != nil { names.append("z_loss") }
        return names
    }
}

extension PretrainArguments {
    /// Megatron's checks of `--expert-model-parallel-size` and `--expert-tensor-parallel-size`.
    func validateExpertParallelism() throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        let ep = expertModelParallelSize
        if let etp = expertTensorParallelSize {
            try require(etp >= 1, "--expert-tensor-parallel-size must be at least 1, got \(etp)")
            try require(etp == 1 || etp == tensorModelParallelSize,
                        "--expert-tensor-parallel-size \(etp): only 1 or the --tensor-model-parallel-size "
                            + "(\(tensorModelParallelSize)) is implemented")
        }
        guard ep > 1 else { return }
        guard let numExperts else {
            throw ArgumentError("--expert-model-parallel-size \(ep) needs --num-experts (as in Megatron)")
        }
        try require(numExperts % ep == 0,
                    "--num-experts (\(numExperts)) must be divisible by --expert-model-parallel-size (\(ep)), as in Megatron")
    }

    /// The expert-parallel group the model's experts are split over; nil with one expert-parallel rank.
    func expertParallelGroup(_ parallel: ParallelState) -> ExpertParallelGroup? {
        guard parallel.expert.size > 1 else { return nil }
        return ExpertParallelGroup(parallel.expert, dispatcher: TokenDispatcherType(rawValue: moeTokenDispatcherType) ?? .allgather,
                                   expertTensorParallel: parallel.expertTensor.size > 1)
    }
}
