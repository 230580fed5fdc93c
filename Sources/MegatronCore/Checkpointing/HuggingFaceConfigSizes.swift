import Foundation

/// The sizes in a Hugging Face `config.json`, checked before a model is allocated for them: each a positive
/// integer below 2^31, and the parameters they imply must fit in this machine's memory in fp32. A crafted or
/// mistyped value (`"vocab_size": 1e12`, `"num_attention_heads": 0`) is an error naming the file and key
/// instead of a trap or a terabyte allocation.
enum HuggingFaceConfigSizes {
    /// The size keys of the architectures `HuggingFaceGPT` reads.
    static let keys = ["vocab_size", "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "hidden_size",
                       "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
                       "max_position_embeddings", "head_dim", "num_local_experts", "num_experts", "num_experts_per_tok",
                       "moe_intermediate_size", "shared_expert_intermediate_size", "decoder_sparse_step"]

    /// Throws when a size in `config` (read from `path`) is not a positive integer below 2^31, or when the model
    /// it describes needs more memory than `memoryBytes`.
    static func check(_ config: [String: Any], path: String,
                      memoryBytes: UInt64 = ProcessInfo.processInfo.physicalMemory) throws {
        var sizes: [String: Double] = [:]
        for key in keys {
            guard let value = config[key], !(value is NSNull) else { continue }
            guard let number = value as? NSNumber, number.doubleValue == number.doubleValue.rounded(),
                  number.doubleValue >= 1, number.doubleValue < Double(Int32.max)
            else {
                let shown = value is String ? "the string \"\(value)\"" : "\(value)"
                throw CheckpointError("\(path): \"\(key)\" is \(shown); it must be a positive integer below 2^31")
            }
            sizes[key] = number.doubleValue
        }
        let parameters = parameterCount(sizes, tied: config["tie_word_embeddings"] as? Bool ?? (config["model_type"] as? String == "gpt2"))
        let bytes = parameters * 4
        guard bytes <= Double(memoryBytes) else {
            throw CheckpointError(String(format: "%@: the sizes describe a model of %.3g parameters (%.3g GB in fp32), "
                + "more than this machine's %.3g GB of memory; check vocab_size, hidden and layer sizes",
                path, parameters, bytes / 1e9, Double(memoryBytes) / 1e9))
        }
    }

    /// Parameters of the embedding, the layers and the output layer (GPT-2's or LLaMA's key names); norms and
    /// biases are left out, which the bound does not need.
    static func parameterCount(_ s: [String: Double], tied: Bool) -> Double {
        let hidden = s["n_embd"] ?? s["hidden_size"] ?? 0
        let layers = s["n_layer"] ?? s["num_hidden_layers"] ?? 0
        let heads = s["n_head"] ?? s["num_attention_heads"] ?? 1
        let headDim = s["head_dim"] ?? hidden / heads
        let groups = s["num_key_value_heads"] ?? heads
        let ffn = s["n_inner"] ?? s["intermediate_size"] ?? 4 * hidden
        let vocab = s["vocab_size"] ?? 0
        // Learned position embeddings (GPT-2's n_positions); RoPE models keep no table for their positions.
        let positions = s["n_positions"] ?? 0
        let attention = hidden * headDim * (heads + 2 * groups) + heads * headDim * hidden
        // Mixtures of experts (counted as if every layer were one): Mixtral's experts are intermediate_size wide.
        let experts = s["num_local_experts"] ?? s["num_experts"] ?? 0
        let expertFFN = s["moe_intermediate_size"] ?? ffn, sharedFFN = s["shared_expert_intermediate_size"] ?? 0
        let mlp = (s["intermediate_size"] != nil ? 3 : 2) * hidden * ffn + 3 * hidden * (experts * expertFFN + sharedFFN)
        return vocab * hidden * (tied ? 1 : 2) + positions * hidden + layers * (attention + mlp)
    }
}
