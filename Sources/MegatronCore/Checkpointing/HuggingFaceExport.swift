import Foundation
import MegatronTensor

extension HuggingFaceGPT {
    /// The Hugging Face architecture that holds a model of this configuration: `preferred` when it fits (a
    /// Mistral stays Mistral, though LLaMA holds the same math), else the first that does. Throws, naming
    /// what differs from the nearest one, when none does.
    public static func architecture(for config: TransformerConfig, preferring preferred: Architecture? = nil) throws -> Architecture {
        let fits = Architecture.allCases.filter { differences(config, $0).isEmpty }
        if let preferred, fits.contains(preferred) { return preferred }
        if let first = fits.first { return first }
        // The nearest among those with the same kind of MLP: a mixture of experts is never "nearly" dense.
        let sameKind = Architecture.allCases.filter { $0.isMixtureOfExperts == (config.moe != nil) }
        let nearest = sameKind.min { differences(config, $0).count < differences(config, $1).count }!
        throw CheckpointError("no Hugging Face architecture holds this model; the nearest, \(nearest.rawValue), differs in: \(differences(config, nearest).joined(separator: ", "))")
    }

    /// What in `config` the architecture cannot express.
    static func differences(_ c: TransformerConfig, _ architecture: Architecture) -> [String] {
        var found: [String] = []
        func require(_ ok: Bool, _ what: String) { if !ok { found.append(what) } }
        // Every architecture applies norm weights as stored.
        require(!c.layernormZeroCenteredGamma, "zero-centred norms (--apply-layernorm-1p: weights applied as 1 + w)")
        require(!c.attentionOutputGate, "an attention output gate (--attention-output-gate)")
        require(c.gatedDeltaNet == nil, "Gated DeltaNet layers (--experimental-attention-variant)")
        // gpt-oss's attention and MLP features: no architecture here has them.
        require(c.softmaxType == .vanilla, "attention sinks (--softmax-type \(c.softmaxType.rawValue))")
        require(c.slidingWindow == nil, "sliding-window attention (--window-size)")
        require(c.yarn == nil, "YaRN rotary embeddings")
        require(c.gluLinearOffset == 0 && c.activationFuncClampValue == nil, "a gated unit's linear offset or clamp")
        switch architecture {
        case .gpt2:
            require(c.normalization == .layerNorm, "RMSNorm instead of LayerNorm")
            require(!c.gatedLinearUnit && (c.activation == .gelu || c.activation == .geluExact), "an MLP other than GeLU")
            require(c.positionEmbeddingType == .learnedAbsolute, "positions other than learned absolute ones")
            require(c.addBiasLinear && c.addQKVBias, "linear layers without biases")
            require(!c.qkLayernorm, "a query/key norm")
            require(c.numQueryGroups == c.numAttentionHeads, "grouped-query attention")
            require(c.kvChannels * c.numAttentionHeads == c.hiddenSize, "kv_channels x heads other than hidden_size")
        case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
            require(c.normalization == .rmsNorm, "LayerNorm instead of RMSNorm")
            require(c.gatedLinearUnit && c.activation == .silu, "an MLP other than SwiGLU")
            require(c.positionEmbeddingType == .rope, "positions other than RoPE")
            require(c.rotaryPercent == 1, "RoPE on part of each head (rotary_percent \(c.rotaryPercent))")
            require(!c.addBiasLinear, "biases on the output projection and the MLP")
            // Qwen2-MoE's config.json says whether it has them (qkv_bias).
            require(architecture == .qwen2MoE || c.addQKVBias == architecture.hasQKVBias, c.addQKVBias ? "q/k/v biases" : "no q/k/v biases")
            require(c.qkLayernorm == architecture.hasQKNorm, c.qkLayernorm ? "a query/key norm" : "no query/key norm")
        }
        return found + moeDifferences(c, architecture)
    }

    /// Megatron-named tensors renamed and split back into Hugging Face's names and layouts, with the
    /// vocabulary cut back to `vocabSize`.
    public static func huggingFaceState(from state: [String: Tensor], architecture: Architecture,
                                        config: TransformerConfig, vocabSize: Int, tied: Bool) throws -> [String: Tensor] {
        func get(_ name: String) throws -> Tensor {
            guard let t = state[name] else { throw CheckpointError("model has no tensor '\(name)'") }
            return t
        }
        func transposed(_ name: String) throws -> Tensor { try get(name).transposed(0, 1).madeContiguous() }
        var out: [String: Tensor] = [:]
        let word = try get("embedding.word_embeddings.weight").narrowed(0, start: 0, length: vocabSize).madeContiguous()
        for i in 0..<config.numLayers {
            let m = "decoder.layers.\(i)."
            let (q, k, v) = splitQKV(try get(m + "self_attention.linear_qkv.weight"), config)
            switch architecture {
            case .gpt2:
                let p = "transformer.h.\(i)."
                out[p + "ln_1.weight"] = try get(m + "input_layernorm.weight")
                out[p + "ln_1.bias"] = try get(m + "input_layernorm.bias")
                out[p + "attn.c_attn.weight"] = Ops.concat([q, k, v], dim: 0).transposed(0, 1).madeContiguous()
                let (qb, kb, vb) = splitQKV(try get(m + "self_attention.linear_qkv.bias"), config)
                out[p + "attn.c_attn.bias"] = Ops.concat([qb, kb, vb], dim: 0)
                out[p + "attn.c_proj.weight"] = try transposed(m + "self_attention.linear_proj.weight")
                out[p + "attn.c_proj.bias"] = try get(m + "self_attention.linear_proj.bias")
                out[p + "ln_2.weight"] = try get(m + "pre_mlp_layernorm.weight")
                out[p + "ln_2.bias"] = try get(m + "pre_mlp_layernorm.bias")
                out[p + "mlp.c_fc.weight"] = try transposed(m + "mlp.linear_fc1.weight")
                out[p + "mlp.c_fc.bias"] = try get(m + "mlp.linear_fc1.bias")
                out[p + "mlp.c_proj.weight"] = try transposed(m + "mlp.linear_fc2.weight")
                out[p + "mlp.c_proj.bias"] = try get(m + "mlp.linear_fc2.bias")
            case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
                let p = "model.layers.\(i)."
                out[p + "input_layernorm.weight"] = try get(m + "input_layernorm.weight")
                (out[p + "self_attn.q_proj.weight"], out[p + "self_attn.k_proj.weight"], out[p + "self_attn.v_proj.weight"]) = (q, k, v)
                if config.addQKVBias {
                    let (qb, kb, vb) = splitQKV(try get(m + "self_attention.linear_qkv.bias"), config)
                    (out[p + "self_attn.q_proj.bias"], out[p + "self_attn.k_proj.bias"], out[p + "self_attn.v_proj.bias"]) = (qb, kb, vb)
                }
                if config.qkLayernorm {
                    out[p + "self_attn.q_norm.weight"] = try get(m + "self_attention.q_layernorm.weight")
                    out[p + "self_attn.k_norm.weight"] = try get(m + "self_attention.k_layernorm.weight")
                }
                out[p + "self_attn.o_proj.weight"] = try get(m + "self_attention.linear_proj.weight")
                out[p + "post_attention_layernorm.weight"] = try get(m + "pre_mlp_layernorm.weight")
                if let moe = config.moe, moe.layers[i] {
                    try putMoE(get, layer: i, moe, architecture, into: &out)
                } else {
                    try putSwiGLU(get, m + "mlp.", as: p + "mlp.", ["gate_proj", "up_proj", "down_proj"], into: &out)
                }
            }
        }
        switch architecture {
        case .gpt2:
            out["transformer.wte.weight"] = word
            out["transformer.wpe.weight"] = try get("embedding.position_embeddings.weight")
            out["transformer.ln_f.weight"] = try get("decoder.final_layernorm.weight")
            out["transformer.ln_f.bias"] = try get("decoder.final_layernorm.bias")
        case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
            out["model.embed_tokens.weight"] = word
            out["model.norm.weight"] = try get("decoder.final_layernorm.weight")
        }
        if !tied {
            out["lm_head.weight"] = try get("output_layer.weight").narrowed(0, start: 0, length: vocabSize).madeContiguous()
        }
        return out
    }

    /// Writes `model` as a Hugging Face directory: `config.json` (see `configJSON`) and `model.safetensors`,
    /// in the architecture `architecture(for:preferring:)` picks, which it returns.
    @discardableResult
    public static func save(_ model: GPTModel, vocabSize: Int, to directory: URL, preferring preferred: Architecture? = nil) throws
        -> Architecture
    {
        try model.requireWhole(for: "Hugging Face export")
        let architecture = try architecture(for: model.config, preferring: preferred)
        let tied = model.outputLayer == nil
        let state = try huggingFaceState(from: model.stateDict(), architecture: architecture, config: model.config,
                                         vocabSize: vocabSize, tied: tied)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let json = configJSON(architecture: architecture, config: model.config, vocabSize: vocabSize,
                              maxPositions: model.maxSequenceLength, tied: tied)
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted]),
                             to: directory.appendingPathComponent("config.json"))
        try SafeTensors.write(state, to: directory.appendingPathComponent("model.safetensors"), metadata: ["format": "pt"])
        return architecture
    }

    /// The `config.json` transformers needs to rebuild the model as `architecture`: every field that the
    /// import reads, written explicitly (`rope_scaling`, biases, query/key norm, sliding windows off, tying,
    /// dtype, the experts and their routing) so no transformers default can change the math.
    public static func configJSON(architecture: Architecture, config: TransformerConfig, vocabSize: Int,
                                  maxPositions: Int, tied: Bool) -> [String: Any] {
        var json: [String: Any] = [
            "model_type": architecture.rawValue, "architectures": [architecture.modelClass], "vocab_size": vocabSize,
            "tie_word_embeddings": tied, "torch_dtype": torchDType(config.paramsDType),
        ]
        switch architecture {
        case .gpt2:
            json.merge([
                "n_positions": maxPositions, "n_ctx": maxPositions, "n_embd": config.hiddenSize, "n_layer": config.numLayers,
                "n_head": config.numAttentionHeads, "n_inner": config.ffnHiddenSize,
                "layer_norm_epsilon": decimal(config.layernormEpsilon),
                "activation_function": config.activation == .geluExact ? "gelu" : "gelu_new",
                "resid_pdrop": decimal(config.hiddenDropout), "embd_pdrop": decimal(config.hiddenDropout),
                "attn_pdrop": decimal(config.attentionDropout), "scale_attn_weights": true,
            ]) { a, _ in a }
        case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
            json.merge([
                "hidden_size": config.hiddenSize, "intermediate_size": config.ffnHiddenSize,
                "num_hidden_layers": config.numLayers, "num_attention_heads": config.numAttentionHeads,
                "num_key_value_heads": config.numQueryGroups, "head_dim": config.kvChannels,
                "max_position_embeddings": maxPositions, "rms_norm_eps": decimal(config.layernormEpsilon),
                "hidden_act": "silu", "attention_dropout": decimal(config.attentionDropout),
                "rope_theta": decimal(config.rotaryBase), "rope_scaling": ropeScalingJSON(config.ropeScaling),
            ]) { a, _ in a }
        }
        switch architecture {
        case .gpt2: break
        case .llama: json.merge(["attention_bias": false, "mlp_bias": false]) { a, _ in a }
        case .mistral, .mixtral: json["sliding_window"] = NSNull()
        case .qwen2, .qwen3, .qwen2MoE, .qwen3MoE:
            json.merge(["use_sliding_window": false, "sliding_window": NSNull(), "max_window_layers": config.numLayers]) { a, _ in a }
            if architecture.hasQKNorm { json["attention_bias"] = false }
        }
        return json.merging(moeConfigJSON(architecture, config)) { _, moe in moe }
    }

    /// `rope_scaling` as transformers reads it (null without scaling).
    static func ropeScalingJSON(_ scaling: RopeScaling?) -> Any {
        switch scaling {
        case nil: return NSNull()
        case .linear(let factor)?: return ["rope_type": "linear", "factor": decimal(factor)] as [String: Any]
        case .llama3(let factor, let low, let high, let original)?:
            return ["rope_type": "llama3", "factor": decimal(factor), "low_freq_factor": decimal(low),
                    "high_freq_factor": decimal(high), "original_max_position_embeddings": original] as [String: Any]
        }
    }

    /// The shortest decimal that reads back as `value` (1e-05, not 9.99999974738e-06).
    static func decimal(_ value: Float) -> Double { Double("\(value)") ?? Double(value) }

    static func torchDType(_ dtype: DType) -> String {
        switch dtype {
        case .bfloat16: "bfloat16"
        case .float16: "float16"
        default: "float32"
        }
    }

    /// Megatron's fused per-group QKV rows split back into separate Q, K and V row blocks.
    static func splitQKV(_ fused: Tensor, _ config: TransformerConfig) -> (Tensor, Tensor, Tensor) {
        let d = config.kvChannels, groups = config.numQueryGroups
        let perGroup = config.numAttentionHeads / groups
        let stride = (perGroup + 2) * d
        var q: [Tensor] = [], k: [Tensor] = [], v: [Tensor] = []
        for g in 0..<groups {
            q.append(fused.narrowed(0, start: g * stride, length: perGroup * d))
            k.append(fused.narrowed(0, start: g * stride + perGroup * d, length: d))
            v.append(fused.narrowed(0, start: g * stride + (perGroup + 1) * d, length: d))
        }
        return (Ops.concat(q, dim: 0), Ops.concat(k, dim: 0), Ops.concat(v, dim: 0))
    }
}
