import Foundation
import MegatronAutograd
import MegatronTensor

/// Hugging Face checkpoints of GPT-2, LLaMA (2 and 3.x, with its `rope_scaling`), Mistral, Qwen2 and Qwen3,
/// and the mixtures of experts Mixtral, Qwen2-MoE and Qwen3-MoE (`config.json` + `model.safetensors`, or shards
/// listed by `model.safetensors.index.json`) mapped to and from `GPTModel`'s Megatron parameter names.
///
/// ```swift
/// let hf = try HuggingFaceGPT.load(directory: URL(fileURLWithPath: "llama-tiny"))
/// let logits = hf.model(tokens)
/// ```
public enum HuggingFaceGPT {
    /// The Hugging Face architectures (`model_type`) this build reads and writes.
    public enum Architecture: String, CaseIterable, Sendable {
        case gpt2, llama, mistral, qwen2, qwen3
        case mixtral
        case qwen2MoE = "qwen2_moe"
        case qwen3MoE = "qwen3_moe"

        /// The class `architectures` names in `config.json`.
        public var modelClass: String {
            switch self {
            case .gpt2: "GPT2LMHeadModel"
            case .llama: "LlamaForCausalLM"
            case .mistral: "MistralForCausalLM"
            case .qwen2: "Qwen2ForCausalLM"
            case .qwen3: "Qwen3ForCausalLM"
            case .mixtral: "MixtralForCausalLM"
            case .qwen2MoE: "Qwen2MoeForCausalLM"
            case .qwen3MoE: "Qwen3MoeForCausalLM"
            }
        }

        /// Whether the architecture's MLPs are mixtures of experts.
        public var isMixtureOfExperts: Bool { [.mixtral, .qwen2MoE, .qwen3MoE].contains(self) }

        /// Q/K/V biases: Qwen2's always; Qwen2-MoE's unless its config.json sets `qkv_bias` false.
        var hasQKVBias: Bool { self == .qwen2 || self == .qwen2MoE }

        /// A per-head RMSNorm of queries and keys (Qwen3's).
        var hasQKNorm: Bool { self == .qwen3 || self == .qwen3MoE }
    }

    /// A model built from a Hugging Face directory, with the unpadded vocabulary size.
    public struct Loaded {
        public let model: GPTModel
        public let architecture: Architecture
        public let vocabSize: Int
    }

    /// Reads `config.json` and the weights in `directory` into a new `GPTModel` (vocabulary padded as Megatron).
    public static func load(directory: URL, makeVocabSizeDivisibleBy: Int = 128) throws -> Loaded {
        let config = try HuggingFaceConfig.read(directory)
        let padded = TensorParallelGroup.paddedVocabSize(config.vocabSize, makeVocabSizeDivisibleBy: makeVocabSizeDivisibleBy,
                                                         tensorParallelSize: 1)
        let model = GPTModel(config: config.transformer, vocabSize: padded, maxSequenceLength: config.maxPositionEmbeddings,
                             untieEmbeddingsAndOutputWeights: !config.tiedEmbeddings)
        var state = try megatronState(from: try readWeights(directory), config: config, source: directory.path)
        for name in ["embedding.word_embeddings.weight", "output_layer.weight"] {
            if let t = state[name] { state[name] = padRows(t, to: padded) }
        }
        let own = model.stateDict()
        for (name, t) in state where own[name]?.dtype != t.dtype { state[name] = t.cast(to: own[name]?.dtype ?? t.dtype) }
        do {
            try model.loadStateDict(state)
        } catch let error as StateDictError {
            throw CheckpointError("\(directory.path): the weights do not fit config.json: \(error.description)")
        }
        return Loaded(model: model, architecture: config.architecture, vocabSize: config.vocabSize)
    }

    /// All tensors of `model.safetensors`, or of every shard that `model.safetensors.index.json` lists; each
    /// tensor the index maps must be in its shard.
    static func readWeights(_ directory: URL) throws -> [String: Tensor] {
        let single = directory.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single.path) { return try SafeTensors.read(single).tensors }
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        guard FileManager.default.fileExists(atPath: indexURL.path) else {
            throw CheckpointError("\(directory.path): neither model.safetensors nor model.safetensors.index.json is there")
        }
        guard let data = try? Data(contentsOf: indexURL),
              let index = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = index["weight_map"] as? [String: String]
        else { throw CheckpointError("\(indexURL.path): not a JSON object with a weight_map of tensor names to shard files") }
        var tensors: [String: Tensor] = [:]
        for shard in Set(map.values).sorted() {
            guard !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                throw CheckpointError("\(indexURL.path): shard '\(shard)' is not a file name in the checkpoint's directory")
            }
            let shardURL = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw CheckpointError("\(indexURL.path): lists shard \(shard), which is not in the directory")
            }
            let file = try SafeTensors.read(shardURL).tensors
            for (name, owner) in map where owner == shard {
                guard let t = file[name] else {
                    throw CheckpointError("\(indexURL.path): maps tensor '\(name)' to \(shard), which does not hold it")
                }
                tensors[name] = t
            }
        }
        return tensors
    }

    /// Hugging Face tensors renamed and rearranged into Megatron's names and layouts (fused QKV by query
    /// group). Each tensor must have the shape `config.json` implies, and a tensor that the mapping does not
    /// use is refused: it would mean the weights hold more than `config.json` describes.
    static func megatronState(from hf: [String: Tensor], config: HuggingFaceConfig, source: String) throws -> [String: Tensor] {
        var weights = HuggingFaceTensors(hf, source: source)
        var out: [String: Tensor] = [:]
        switch config.architecture {
        case .gpt2:
            try gpt2State(&weights, config, into: &out)
        case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
            try llamaState(&weights, config, into: &out)
        }
        if !config.tiedEmbeddings {
            out["output_layer.weight"] = try weights.take("lm_head.weight", [config.vocabSize, config.transformer.hiddenSize],
                                                          prefixed: false)
        } else {
            weights.ignore("lm_head.weight")   // transformers ties it to the embeddings whatever the file holds
        }
        try weights.requireAllUsed()
        return out
    }

    static func gpt2State(_ w: inout HuggingFaceTensors, _ hf: HuggingFaceConfig, into out: inout [String: Tensor]) throws {
        let config = hf.transformer
        let (h, ffn) = (config.hiddenSize, config.ffnHiddenSize)
        out["embedding.word_embeddings.weight"] = try w.take("wte.weight", [hf.vocabSize, h])
        out["embedding.position_embeddings.weight"] = try w.take("wpe.weight", [hf.maxPositionEmbeddings, h])
        for i in 0..<config.numLayers {
            let (p, m) = ("h.\(i).", "decoder.layers.\(i).")
            out[m + "input_layernorm.weight"] = try w.take(p + "ln_1.weight", [h])
            out[m + "input_layernorm.bias"] = try w.take(p + "ln_1.bias", [h])
            // GPT-2's Conv1D stores [in, out]; c_attn's output is [q | k | v].
            let qkv = try w.take(p + "attn.c_attn.weight", [h, 3 * h]).transposed(0, 1)
            out[m + "self_attention.linear_qkv.weight"] = fuseQKV(qkv.chunkRows(3), config)
            out[m + "self_attention.linear_qkv.bias"] = fuseQKV(try w.take(p + "attn.c_attn.bias", [3 * h]).chunkRows(3), config)
            out[m + "self_attention.linear_proj.weight"] = try w.take(p + "attn.c_proj.weight", [h, h]).transposed(0, 1).madeContiguous()
            out[m + "self_attention.linear_proj.bias"] = try w.take(p + "attn.c_proj.bias", [h])
            out[m + "pre_mlp_layernorm.weight"] = try w.take(p + "ln_2.weight", [h])
            out[m + "pre_mlp_layernorm.bias"] = try w.take(p + "ln_2.bias", [h])
            out[m + "mlp.linear_fc1.weight"] = try w.take(p + "mlp.c_fc.weight", [h, ffn]).transposed(0, 1).madeContiguous()
            out[m + "mlp.linear_fc1.bias"] = try w.take(p + "mlp.c_fc.bias", [ffn])
            out[m + "mlp.linear_fc2.weight"] = try w.take(p + "mlp.c_proj.weight", [ffn, h]).transposed(0, 1).madeContiguous()
            out[m + "mlp.linear_fc2.bias"] = try w.take(p + "mlp.c_proj.bias", [h])
            // Causal-mask buffers that older GPT-2 checkpoints saved.
            w.ignore(p + "attn.bias")
            w.ignore(p + "attn.masked_bias")
        }
        out["decoder.final_layernorm.weight"] = try w.take("ln_f.weight", [h])
        out["decoder.final_layernorm.bias"] = try w.take("ln_f.bias", [h])
    }

    static func llamaState(_ w: inout HuggingFaceTensors, _ hf: HuggingFaceConfig, into out: inout [String: Tensor]) throws {
        let config = hf.transformer
        let (h, ffn, d) = (config.hiddenSize, config.ffnHiddenSize, config.kvChannels)
        let rows = ["q_proj": config.numAttentionHeads * d, "k_proj": config.numQueryGroups * d, "v_proj": config.numQueryGroups * d]
        out["embedding.word_embeddings.weight"] = try w.take("embed_tokens.weight", [hf.vocabSize, h])
        for i in 0..<config.numLayers {
            let (p, m) = ("layers.\(i).", "decoder.layers.\(i).")
            out[m + "input_layernorm.weight"] = try w.take(p + "input_layernorm.weight", [h])
            let projections = ["q_proj", "k_proj", "v_proj"]
            out[m + "self_attention.linear_qkv.weight"] = fuseQKV(
                try projections.map { try w.take(p + "self_attn.\($0).weight", [rows[$0]!, h]) }, config)
            if config.addQKVBias {
                out[m + "self_attention.linear_qkv.bias"] = fuseQKV(
                    try projections.map { try w.take(p + "self_attn.\($0).bias", [rows[$0]!]) }, config)
            }
            if config.qkLayernorm {
                out[m + "self_attention.q_layernorm.weight"] = try w.take(p + "self_attn.q_norm.weight", [d])
                out[m + "self_attention.k_layernorm.weight"] = try w.take(p + "self_attn.k_norm.weight", [d])
            }
            out[m + "self_attention.linear_proj.weight"] = try w.take(p + "self_attn.o_proj.weight", [h, rows["q_proj"]!])
            out[m + "pre_mlp_layernorm.weight"] = try w.take(p + "post_attention_layernorm.weight", [h])
            if let moe = config.moe, moe.layers[i] {
                try takeMoE(&w, layer: i, moe, hf.architecture, hidden: h, into: &out)
            } else {
                try takeSwiGLU(&w, p + "mlp.", ["gate_proj", "up_proj", "down_proj"], hidden: h, ffn: ffn, as: m + "mlp.", into: &out)
            }
            w.ignore(p + "self_attn.rotary_emb.inv_freq")   // a buffer older checkpoints saved
        }
        out["decoder.final_layernorm.weight"] = try w.take("norm.weight", [h])
    }

    /// A SwiGLU MLP's `gate`, `up`, `down` projections under `prefix` (`names` in that order) as Megatron's
    /// `linear_fc1` ([gate; up]) and `linear_fc2` under `target`.
    static func takeSwiGLU(_ w: inout HuggingFaceTensors, _ prefix: String, _ names: [String], hidden h: Int, ffn: Int,
                           as target: String, into out: inout [String: Tensor]) throws {
        out[target + "linear_fc1.weight"] = Ops.concat([try w.take(prefix + names[0] + ".weight", [ffn, h]),
                                                        try w.take(prefix + names[1] + ".weight", [ffn, h])], dim: 0)
        out[target + "linear_fc2.weight"] = try w.take(prefix + names[2] + ".weight", [h, ffn])
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

/// A checkpoint's tensors as the mapping takes them: by name, with or without the `transformer.` /
/// `model.` prefix, keeping count of which were used.
struct HuggingFaceTensors {
    private let tensors: [String: Tensor]
    private let source: String
    private var unused: Set<String>

    init(_ tensors: [String: Tensor], source: String) {
        self.tensors = tensors
        self.source = source
        unused = Set(tensors.keys)
    }

    private func key(_ name: String, prefixed: Bool) -> String? {
        (prefixed ? [name, "transformer." + name, "model." + name] : [name]).first { tensors[$0] != nil }
    }

    /// The tensor `name`, which must have `shape`.
    mutating func take(_ name: String, _ shape: [Int], prefixed: Bool = true) throws -> Tensor {
        guard let key = key(name, prefixed: prefixed) else { throw CheckpointError("\(source): checkpoint has no tensor '\(name)'") }
        guard tensors[key]!.shape == shape else {
            throw CheckpointError("\(source): tensor '\(key)' has shape \(tensors[key]!.shape) where config.json implies \(shape)")
        }
        unused.remove(key)
        return tensors[key]!
    }

    /// Marks `name` as used if present: buffers and duplicates the model has no place for and needs none.
    mutating func ignore(_ name: String) {
        if let key = key(name, prefixed: true) { unused.remove(key) }
    }

    func requireAllUsed() throws {
        guard unused.isEmpty else {
            let names = unused.sorted()
            throw CheckpointError("\(source): the checkpoint holds tensors that config.json gives no place to: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? " and \(names.count - 5) more" : "")")
        }
    }
}

extension Tensor {
    /// Splits dimension 0 into `n` equal views.
    func chunkRows(_ n: Int) -> [Tensor] {
        (0..<n).map { narrowed(0, start: $0 * shape[0] / n, length: shape[0] / n) }
    }
}
