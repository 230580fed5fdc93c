import MegatronCore

extension PretrainArguments {
    /// `--recompute-granularity`, or `selective` with `--recompute-activations` (Megatron's alias, which wins).
    public var resolvedRecomputeGranularity: String? { recomputeActivations ? "selective" : recomputeGranularity }

    /// The MLP's non-linearity as Megatron picks it: SiLU gated (`--swiglu`), relu² (`--squared-relu`), the
    /// fused bias + tanh-approximated GeLU, or, with that fusion off (`--no-bias-gelu-fusion`, or no bias, where
    /// Megatron turns it off itself), the exact erf GeLU of `F.gelu`.
    var mlpActivation: TransformerConfig.Activation {
        if swiglu { return .silu }
        if squaredRelu { return .squaredRelu }
        if quickGeglu { return .quickGelu }
        return biasGeluFusion && addBiasLinear ? .gelu : .geluExact
    }

    /// The batch-size ramp of `--rampup-batch-size`, checked against the batch sizes; nil without the flag.
    func batchSizeRampup(dataParallelSize: Int) throws -> BatchSizeRampup? {
        try rampupBatchSize.map {
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
            "gdn_norm_out": "gated delta net attention is not implemented",
            "gdp_in_proj": "gated delta product attention is not implemented",
            "gdp_qkv": "gated delta product attention is not implemented", "mhc": "hyper-connections are not implemented",
        ]
        var modules = Set<RecomputedModule>()
        for name in recomputeModules ?? ["core_attn"] {
            if let module = RecomputedModule(rawValue: name) {
                modules.insert(module)
            } else if let reason = unavailable[name] {
                throw ArgumentError("--recompute-modules \(name): not supported here (\(reason)); supported: core_attn, mlp")
            } else {
                throw ArgumentError("--recompute-modules: unknown module '\(name)'; supported: core_attn, mlp")
            }
        }
        return modules
    }

    /// Megatron's checks of the model and training features (`validate_args`, `TransformerConfig`).
    func validateModelFeatures(dataParallelSize: Int) throws {
        if !addPositionEmbedding && positionEmbeddingType != "rope" {
            throw ArgumentError("--no-position-embedding is deprecated and only allowed with --position-embedding-type rope (as in Megatron); use --position-embedding-type none for a model without position embeddings")
        }
        if squaredRelu && swiglu { throw ArgumentError("--squared-relu and --swiglu cannot both be set") }
        if rampupBatchSize != nil && trainIters != nil {
            throw ArgumentError("--rampup-batch-size needs sample-based training (--train-samples), not --train-iters, as in Megatron")
        }
        _ = try batchSizeRampup(dataParallelSize: dataParallelSize)
        switch resolvedRecomputeGranularity {
        case "full":
            if recomputeMethod == nil || recomputeNumLayers == nil {
                throw ArgumentError("--recompute-granularity full needs --recompute-method and --recompute-num-layers")
            }
        case "selective":
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
