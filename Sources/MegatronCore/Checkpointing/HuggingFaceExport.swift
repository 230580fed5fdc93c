import Foundation
import MegatronTensor

extension HuggingFaceGPT {
    /// Which Hugging Face architecture holds a model of this configuration, if any.
    public static func architecture(for config: TransformerConfig) throws -> Architecture {
        guard !config.layernormZeroCenteredGamma else {
            throw CheckpointError("no Hugging Face architecture matches this model: its norms are zero-centred (--apply-layernorm-1p, weights applied as 1 + w)")
        }
        switch (config.normalization, config.gatedLinearUnit, config.positionEmbeddingType) {
        case (.layerNorm, false, .learnedAbsolute) where config.addBiasLinear && config.activation == .gelu:
            return .gpt2
        case (.rmsNorm, true, .rope) where !config.addBiasLinear && config.activation == .silu:
            return .llama
        default:
            throw CheckpointError("no Hugging Face architecture matches this model (GPT-2 needs LayerNorm, GeLU, biases and learned positions; LLaMA needs RMSNorm, SwiGLU, no biases and RoPE)")
        }
    }

    /// Megatron-named tensors renamed and split back into Hugging Face's names and layouts, with the
    /// vocabulary cut back to `vocabSize`.
    public static func huggingFaceState(from state: [String: Tensor], architecture: Architecture,
                                        config: TransformerConfig, vocabSize: Int, tied: Bool) throws -> [String: Tensor] {
        func get(_ name: String) throws -> Tensor {
            guard let t = state[name] else { throw CheckpointError("model has no tensor '\(name)'") }
            return t
        }
        func transposed(_ name: String) throws -> Tensor { try get(name).transposed(0, 1).contiguous() }
        var out: [String: Tensor] = [:]
        let word = try get("embedding.word_embeddings.weight").narrowed(0, start: 0, length: vocabSize).contiguous()
        for i in 0..<config.numLayers {
            let m = "decoder.layers.\(i)."
            let (q, k, v) = splitQKV(try get(m + "self_attention.linear_qkv.weight"), config)
            switch architecture {
            case .gpt2:
                let p = "transformer.h.\(i)."
                out[p + "ln_1.weight"] = try get(m + "input_layernorm.weight")
                out[p + "ln_1.bias"] = try get(m + "input_layernorm.bias")
                out[p + "attn.c_attn.weight"] = Ops.concat([q, k, v], dim: 0).transposed(0, 1).contiguous()
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
            case .llama:
                let p = "model.layers.\(i)."
                out[p + "input_layernorm.weight"] = try get(m + "input_layernorm.weight")
                out[p + "self_attn.q_proj.weight"] = q
                out[p + "self_attn.k_proj.weight"] = k
                out[p + "self_attn.v_proj.weight"] = v
                out[p + "self_attn.o_proj.weight"] = try get(m + "self_attention.linear_proj.weight")
                out[p + "post_attention_layernorm.weight"] = try get(m + "pre_mlp_layernorm.weight")
                let fc1 = try get(m + "mlp.linear_fc1.weight")
                let half = fc1.shape[0] / 2
                out[p + "mlp.gate_proj.weight"] = fc1.narrowed(0, start: 0, length: half).contiguous()
                out[p + "mlp.up_proj.weight"] = fc1.narrowed(0, start: half, length: half).contiguous()
                out[p + "mlp.down_proj.weight"] = try get(m + "mlp.linear_fc2.weight")
            }
        }
        switch architecture {
        case .gpt2:
            out["transformer.wte.weight"] = word
            out["transformer.wpe.weight"] = try get("embedding.position_embeddings.weight")
            out["transformer.ln_f.weight"] = try get("decoder.final_layernorm.weight")
            out["transformer.ln_f.bias"] = try get("decoder.final_layernorm.bias")
        case .llama:
            out["model.embed_tokens.weight"] = word
            out["model.norm.weight"] = try get("decoder.final_layernorm.weight")
        }
        if !tied {
            out["lm_head.weight"] = try get("output_layer.weight").narrowed(0, start: 0, length: vocabSize).contiguous()
        }
        return out
    }

    /// The `config.json` Hugging Face needs to rebuild the model.
    public static func configJSON(architecture: Architecture, config: TransformerConfig, vocabSize: Int,
                                  maxPositions: Int, tied: Bool) -> [String: Any] {
        switch architecture {
        case .gpt2:
            return ["model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": vocabSize,
                    "n_positions": maxPositions, "n_embd": config.hiddenSize, "n_layer": config.numLayers,
                    "n_head": config.numAttentionHeads, "n_inner": config.ffnHiddenSize,
                    "layer_norm_epsilon": Double(config.layernormEpsilon), "activation_function": "gelu_new",
                    "tie_word_embeddings": tied]
        case .llama:
            return ["model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocabSize,
                    "hidden_size": config.hiddenSize, "intermediate_size": config.ffnHiddenSize,
                    "num_hidden_layers": config.numLayers, "num_attention_heads": config.numAttentionHeads,
                    "num_key_value_heads": config.numQueryGroups, "head_dim": config.kvChannels,
                    "max_position_embeddings": maxPositions, "rms_norm_eps": Double(config.layernormEpsilon),
                    "rope_theta": Double(config.rotaryBase), "tie_word_embeddings": tied, "hidden_act": "silu"]
        }
    }

    /// Writes `model` as a Hugging Face directory: `config.json` and `model.safetensors`.
    public static func save(_ model: GPTModel, vocabSize: Int, to directory: URL) throws {
        try model.requireWhole(for: "Hugging Face export")
        let architecture = try architecture(for: model.config)
        let tied = model.outputLayer == nil
        let state = try huggingFaceState(from: model.stateDict(), architecture: architecture, config: model.config,
                                         vocabSize: vocabSize, tied: tied)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let json = configJSON(architecture: architecture, config: model.config, vocabSize: vocabSize,
                              maxPositions: model.maxSequenceLength, tied: tied)
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted]),
                             to: directory.appendingPathComponent("config.json"))
        try SafeTensors.write(state, to: directory.appendingPathComponent("model.safetensors"), metadata: ["format": "pt"])
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
