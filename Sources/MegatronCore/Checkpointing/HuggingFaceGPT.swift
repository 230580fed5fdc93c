import Foundation
import MegatronAutograd
import MegatronTensor

/// Hugging Face GPT-2 and LLaMA-architecture checkpoints (`config.json` + `model.safetensors`, also sharded
/// with `model.safetensors.index.json`) mapped to and from `GPTModel`'s Megatron parameter names.
///
/// ```swift
/// let hf = try HuggingFaceGPT.load(directory: URL(fileURLWithPath: "llama-tiny"))
/// let logits = hf.model(tokens)
/// ```
public enum HuggingFaceGPT {
    public enum Architecture: String { case gpt2, llama }

    /// A model built from a Hugging Face directory, with the unpadded vocabulary size.
    public struct Loaded {
        public let model: GPTModel
        public let architecture: Architecture
        public let vocabSize: Int
    }

    /// Reads `config.json` and the weights in `directory` into a new `GPTModel` (vocabulary padded as Megatron).
    public static func load(directory: URL, makeVocabSizeDivisibleBy: Int = 128) throws -> Loaded {
        let config = try readConfig(directory)
        try HuggingFaceConfigSizes.check(config, path: directory.appendingPathComponent("config.json").path)
        let (architecture, transformer, vocab, positions, tied) = try modelShape(config)
        let padded = (vocab + makeVocabSizeDivisibleBy - 1) / makeVocabSizeDivisibleBy * makeVocabSizeDivisibleBy
        let model = GPTModel(config: transformer, vocabSize: padded, maxSequenceLength: positions,
                             untieEmbeddingsAndOutputWeights: !tied)
        let weights = try readWeights(directory)
        var state = try megatronState(from: weights, architecture: architecture, config: transformer, tied: tied)
        let word = state["embedding.word_embeddings.weight"]!
        state["embedding.word_embeddings.weight"] = padRows(word, to: padded)
        if let out = state["output_layer.weight"] { state["output_layer.weight"] = padRows(out, to: padded) }
        let own = model.stateDict()
        for (name, t) in state where own[name]?.dtype != t.dtype { state[name] = t.cast(to: own[name]?.dtype ?? t.dtype) }
        try model.loadStateDict(state)
        return Loaded(model: model, architecture: architecture, vocabSize: vocab)
    }

    static func readConfig(_ directory: URL) throws -> [String: Any] {
        let url = directory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw CheckpointError("\(url.path): missing or not a JSON object") }
        return json
    }

    /// All tensors of `model.safetensors`, or of every shard that `model.safetensors.index.json` lists.
    static func readWeights(_ directory: URL) throws -> [String: Tensor] {
        let single = directory.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single.path) { return try SafeTensors.read(single).tensors }
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        guard let data = try? Data(contentsOf: indexURL),
              let index = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = index["weight_map"] as? [String: String]
        else { throw CheckpointError("\(directory.path): no model.safetensors and no readable model.safetensors.index.json") }
        var tensors: [String: Tensor] = [:]
        for shard in Set(map.values).sorted() {
            tensors.merge(try SafeTensors.read(directory.appendingPathComponent(shard)).tensors) { a, _ in a }
        }
        return tensors
    }

    static func modelShape(_ c: [String: Any]) throws
        -> (Architecture, TransformerConfig, vocab: Int, positions: Int, tied: Bool)
    {
        func int(_ key: String) throws -> Int {
            guard let v = c[key] as? Int else { throw CheckpointError("config.json lacks integer '\(key)'") }
            return v
        }
        let type = c["model_type"] as? String ?? ""
        switch type {
        case "gpt2":
            let h = try int("n_embd")
            let config = try TransformerConfig(
                numLayers: try int("n_layer"), hiddenSize: h, numAttentionHeads: try int("n_head"),
                ffnHiddenSize: (c["n_inner"] as? Int) ?? 4 * h,
                layernormEpsilon: Float((c["layer_norm_epsilon"] as? Double) ?? 1e-5),
                hiddenDropout: 0, attentionDropout: 0)
            return (.gpt2, config, try int("vocab_size"), try int("n_positions"), (c["tie_word_embeddings"] as? Bool) ?? true)
        case "llama", "mistral", "qwen2":
            let heads = try int("num_attention_heads")
            let config = try TransformerConfig(
                numLayers: try int("num_hidden_layers"), hiddenSize: try int("hidden_size"), numAttentionHeads: heads,
                numQueryGroups: (c["num_key_value_heads"] as? Int) ?? heads, kvChannels: c["head_dim"] as? Int,
                ffnHiddenSize: try int("intermediate_size"), normalization: .rmsNorm,
                layernormEpsilon: Float((c["rms_norm_eps"] as? Double) ?? 1e-6), gatedLinearUnit: true,
                activation: .silu, addBiasLinear: false, addQKVBias: type == "qwen2",
                hiddenDropout: 0, attentionDropout: 0, positionEmbeddingType: .rope,
                rotaryBase: Float((c["rope_theta"] as? Double) ?? 10000))
            return (.llama, config, try int("vocab_size"), try int("max_position_embeddings"),
                    (c["tie_word_embeddings"] as? Bool) ?? false)
        default:
            throw CheckpointError("config.json model_type '\(type)' is not one this build converts (gpt2, llama, mistral, qwen2)")
        }
    }

    /// Hugging Face tensors renamed and rearranged into Megatron's names and layouts (fused QKV by query group).
    static func megatronState(from hf: [String: Tensor], architecture: Architecture, config: TransformerConfig,
                              tied: Bool) throws -> [String: Tensor] {
        func get(_ name: String) throws -> Tensor {
            guard let t = hf[name] ?? hf["transformer." + name] ?? hf["model." + name] else {
                throw CheckpointError("checkpoint has no tensor '\(name)'")
            }
            return t
        }
        var out: [String: Tensor] = [:]
        let L = config.numLayers
        switch architecture {
        case .gpt2:
            out["embedding.word_embeddings.weight"] = try get("wte.weight")
            out["embedding.position_embeddings.weight"] = try get("wpe.weight")
            for i in 0..<L {
                let (p, m) = ("h.\(i).", "decoder.layers.\(i).")
                out[m + "input_layernorm.weight"] = try get(p + "ln_1.weight")
                out[m + "input_layernorm.bias"] = try get(p + "ln_1.bias")
                // GPT-2's Conv1D stores [in, out]; c_attn's output is [q | k | v].
                let qkv = try get(p + "attn.c_attn.weight").transposed(0, 1)
                out[m + "self_attention.linear_qkv.weight"] = fuseQKV(qkv.chunkRows(3), config)
                out[m + "self_attention.linear_qkv.bias"] = fuseQKV(try get(p + "attn.c_attn.bias").chunkRows(3), config)
                out[m + "self_attention.linear_proj.weight"] = try get(p + "attn.c_proj.weight").transposed(0, 1).contiguous()
                out[m + "self_attention.linear_proj.bias"] = try get(p + "attn.c_proj.bias")
                out[m + "pre_mlp_layernorm.weight"] = try get(p + "ln_2.weight")
                out[m + "pre_mlp_layernorm.bias"] = try get(p + "ln_2.bias")
                out[m + "mlp.linear_fc1.weight"] = try get(p + "mlp.c_fc.weight").transposed(0, 1).contiguous()
                out[m + "mlp.linear_fc1.bias"] = try get(p + "mlp.c_fc.bias")
                out[m + "mlp.linear_fc2.weight"] = try get(p + "mlp.c_proj.weight").transposed(0, 1).contiguous()
                out[m + "mlp.linear_fc2.bias"] = try get(p + "mlp.c_proj.bias")
            }
            out["decoder.final_layernorm.weight"] = try get("ln_f.weight")
            out["decoder.final_layernorm.bias"] = try get("ln_f.bias")
        case .llama:
            out["embedding.word_embeddings.weight"] = try get("embed_tokens.weight")
            for i in 0..<L {
                let (p, m) = ("layers.\(i).", "decoder.layers.\(i).")
                out[m + "input_layernorm.weight"] = try get(p + "input_layernorm.weight")
                let parts = try ["q_proj", "k_proj", "v_proj"].map { try get(p + "self_attn.\($0).weight") }
                out[m + "self_attention.linear_qkv.weight"] = fuseQKV(parts, config)
                if config.addQKVBias {
                    out[m + "self_attention.linear_qkv.bias"] = fuseQKV(
                        try ["q_proj", "k_proj", "v_proj"].map { try get(p + "self_attn.\($0).bias") }, config)
                }
                out[m + "self_attention.linear_proj.weight"] = try get(p + "self_attn.o_proj.weight")
                out[m + "pre_mlp_layernorm.weight"] = try get(p + "post_attention_layernorm.weight")
                out[m + "mlp.linear_fc1.weight"] = Ops.concat([try get(p + "mlp.gate_proj.weight"), try get(p + "mlp.up_proj.weight")], dim: 0)
                out[m + "mlp.linear_fc2.weight"] = try get(p + "mlp.down_proj.weight")
            }
            out["decoder.final_layernorm.weight"] = try get("norm.weight")
        }
        if !tied {
            guard let head = hf["lm_head.weight"] else { throw CheckpointError("checkpoint has no tensor 'lm_head.weight'") }
            out["output_layer.weight"] = head
        }
        return out
    }

    /// Interleaves separate Q, K, V (rows = output features) into Megatron's per-group [q heads, k, v] rows.
    static func fuseQKV(_ parts: [Tensor], _ config: TransformerConfig) -> Tensor {
        let d = config.kvChannels, groups = config.numQueryGroups
        let perGroup = config.numAttentionHeads / groups
        var pieces: [Tensor] = []
        for g in 0..<groups {
            pieces.append(parts[0].narrowed(0, start: g * perGroup * d, length: perGroup * d))
            pieces.append(parts[1].narrowed(0, start: g * d, length: d))
            pieces.append(parts[2].narrowed(0, start: g * d, length: d))
        }
        return Ops.concat(pieces, dim: 0)
    }

    static func padRows(_ t: Tensor, to rows: Int) -> Tensor {
        if t.shape[0] == rows { return t }
        return Ops.concat([t, Tensor.zeros([rows - t.shape[0]] + Array(t.shape.dropFirst()), dtype: t.dtype)], dim: 0)
    }
}

extension Tensor {
    /// Splits dimension 0 into `n` equal views.
    func chunkRows(_ n: Int) -> [Tensor] {
        (0..<n).map { narrowed(0, start: $0 * shape[0] / n, length: shape[0] / n) }
    }
}
