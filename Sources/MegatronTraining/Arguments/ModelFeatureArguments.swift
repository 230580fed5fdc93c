import MegatronCore

extension PretrainArguments {
    /// `--recompute-granularity`, or `selective` with `--recompute-activations` (Megatron's alias, which wins).
    public var resolvedRecomputeGranularity: RecomputeGranularity? { recomputeActivations ? .selective : recomputeGranularity }

    /// The MLP's non-linearity as Megatron picks it: SiLU gated (`--swiglu`), relu² (`--squared-relu`), the
    /// fused bias + tanh-approximated GeLU, or, with that fusion off (`--no-bias-gelu-fusion`, or no bias, where
    /// Megatron turns it off itself), the exact erf GeLU of `F.gelu`.
    var mlpActivation: TransformerConfig.Activation {
        if swiglu { return .silu }
        if squaredRelu { return .squaredRelu }
        if quickGeglu { return .quickGelu }
        return biasGeluFusion && addBiasLinear ? .gelu : .geluExact
    }

    /// The batch-size ramp of `--rampup-batch-size` (checked against the batch sizes) or the step schedule of
    /// `--step-batch-size-schedule` (thresholds in tokens of `--seq-length`); nil without either.
    func batchSizeSchedule(dataParallelSize: Int) throws -> (any BatchSizeSchedule)? {
        if let stepBatchSizeSchedule {
            // Megatron's arguments.py and its calculator refuse these next to a step schedule.
            if globalBatchSize != nil {
                throw ArgumentError("Cannot specify both --step-batch-size-schedule and --global-batch-size (as in Megatron: "
                    + "the schedule's entries are the global batch sizes)")
            }
            if rampupBatchSize != nil {
                throw ArgumentError("--rampup-batch-size and --step-batch-size-schedule cannot both be set (Megatron ignores "
                    + "the deprecated ramp-up next to a schedule); write the ramp as schedule steps")
            }
            return try StepBatchSizeSchedule(stepBatchSizeSchedule, seqLength: seqLength)
        }
        return try rampupBatchSize.map {
            try BatchSizeRampup($0, globalBatchSize: globalBatchSize ?? microBatchSize * dataParallelSize,
                                microBatchTimesDataParallel: microBatchSize * dataParallelSize)
        }
    }

    /// What `--recompute-granularity selective` recomputes: `--recompute-modules` (Megatron's default
    /// `core_attn`). Megatron's other modules belong to features this implementation lacks and are refused.
    public func selectiveRecomputeModules() throws -> Set<RecomputedModule> {
        let unavailable = [
            "layernorm": "not implemented: each norm's output is kept by the linear layer after it, so freeing it needs a fused norm + linear primitive this build lacks",
            "moe_act": "mixture of experts is not implemented", "moe": "mixture of experts is not implemented",
            "shared_experts": "mixture of experts is not implemented",
            "mla_up_proj": "multi-latent attention is not implemented",
            "gdp_in_proj": "gated delta product attention is not implemented",
            "gdp_qkv": "gated delta product attention is not implemented", "mhc": "hyper-connections are not implemented",
        ]
        var modules = Set<RecomputedModule>()
        let names = recomputeModules ?? ["core_attn"]
        if names.contains("gdn_norm_out") && experimentalAttentionVariant == nil {
            throw ArgumentError("--recompute-modules gdn_norm_out needs Gated DeltaNet layers (--experimental-attention-variant gated_delta_net), as in Megatron")
        }
        for name in names {
            if let module = RecomputedModule(rawValue: name) {
                modules.insert(module)
            } else if let reason = unavailable[name] {
                throw ArgumentError("--recompute-modules \(name): not supported here (\(reason)); supported: core_attn, mlp, gdn_norm_out")
            } else {
                throw ArgumentError("--recompute-modules: unknown module '\(name)'; supported: core_attn, mlp, gdn_norm_out")
            }
        }
        return modules
    }

    /// Megatron's checks of the model and training features (`validate_args`, `TransformerConfig`).
    func validateModelFeatures(dataParallelSize: Int) throws {
        if !addPositionEmbedding && positionEmbeddingType != .rope {
            throw ArgumentError("--no-position-embedding is deprecated and only allowed with --position-embedding-type rope (as in Megatron); use --position-embedding-type none for a model without position embeddings")
        }
        if squaredRelu && swiglu { throw ArgumentError("--squared-relu and --swiglu cannot both be set") }
        if rampupBatchSize != nil && trainIters != nil {
            throw ArgumentError("--rampup-batch-size needs sample-based training (--train-samples), not --train-iters, as in Megatron")
        }
        _ = try batchSizeSchedule(dataParallelSize: dataParallelSize)
        switch resolvedRecomputeGranularity {
        case .full:
            if recomputeMethod == nil || recomputeNumLayers == nil {
                throw ArgumentError("--recompute-granularity full needs --recompute-method and --recompute-num-layers")
            }
        case .selective:
            if recomputeNumLayers != nil {
                throw ArgumentError("--recompute-num-layers must not be set with --recompute-granularity selective (or --recompute-activations)")
            }
            _ = try selectiveRecomputeModules()
        default:
            break
        }
        try validateGptOss()
    }
}
