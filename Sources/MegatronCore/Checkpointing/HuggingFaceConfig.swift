import Foundation

/// A Hugging Face `config.json` read into the model it describes.
///
/// Every field that would change the math and that this build does not implement is refused by name
/// (`rope_scaling` types other than linear and llama3, an active `sliding_window`, `attention_bias`,
/// `mlp_bias`, other activations, `partial_rotary_factor`, Mixtral's `router_jitter_noise`, ...), so an import
/// never runs a different model
/// than the one the file describes. Fields that only choose an implementation or that no math reads
/// (`torch_dtype`, token ids, `use_cache`, ...) are ignored.
///
/// ```swift
/// let config = try HuggingFaceConfig.read(directory)
/// print(config.architecture, config.transformer.numLayers, config.vocabSize)
/// ```
public struct HuggingFaceConfig {
    public let architecture: HuggingFaceGPT.Architecture
    public let transformer: TransformerConfig
    /// The vocabulary before Megatron's padding.
    public let vocabSize: Int
    public let maxPositionEmbeddings: Int
    public let tiedEmbeddings: Bool

    /// Reads and checks `directory/config.json`.
    public static func read(_ directory: URL) throws -> HuggingFaceConfig {
        let url = directory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw CheckpointError("\(url.path): missing or not a JSON object") }
        return try HuggingFaceConfig(json: json, file: url.path)
    }

    /// Checks and converts a parsed `config.json`; errors name `file` and the field.
    public init(json: [String: Any], file: String) throws {
        // Sizes first: nothing may be built from values that would ask for terabytes.
        try HuggingFaceConfigSizes.check(json, path: file)
        let fields = ConfigFields(json: json, file: file)
        let type = try fields.string("model_type", default: "")
        guard let architecture = HuggingFaceGPT.Architecture(rawValue: type) else {
            throw CheckpointError("\(file): model_type '\(type)' is not one this build converts (\(HuggingFaceGPT.Architecture.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if fields.isSet("quantization_config") {
            throw fields.refusal("quantization_config", "quantized weights are not supported: convert the unquantized model")
        }
        self.architecture = architecture
        do {
            switch architecture {
            case .gpt2:
                transformer = try Self.gpt2(fields)
                (vocabSize, maxPositionEmbeddings) = (try fields.int("vocab_size"), try fields.int("n_positions"))
                tiedEmbeddings = try fields.bool("tie_word_embeddings", default: true)
            case .llama, .mistral, .qwen2, .qwen3, .mixtral, .qwen2MoE, .qwen3MoE:
                transformer = try Self.llamaFamily(fields, architecture)
                (vocabSize, maxPositionEmbeddings) = (try fields.int("vocab_size"), try fields.int("max_position_embeddings"))
                tiedEmbeddings = try fields.bool("tie_word_embeddings", default: false)
            }
        } catch let error as ConfigError {
            throw CheckpointError("\(file): \(error.description)")
        }
        try refuseActiveSlidingWindow(fields)
    }

    static func gpt2(_ f: ConfigFields) throws -> TransformerConfig {
        // GPT-2's attention always scales by 1/sqrt(head dim) and nothing else here.
        if try !f.bool("scale_attn_weights", default: true) {
            throw f.refusal("scale_attn_weights", "false (unscaled attention scores) is not supported")
        }
        if try f.bool("scale_attn_by_inverse_layer_idx", default: false) {
            throw f.refusal("scale_attn_by_inverse_layer_idx", "true (scores scaled by 1 / layer index) is not supported")
        }
        if try f.bool("add_cross_attention", default: false) {
            throw f.refusal("add_cross_attention", "true (an encoder-decoder GPT-2) is not supported")
        }
        let activation: TransformerConfig.Activation
        switch try f.string("activation_function", default: "gelu_new") {
        case "gelu_new", "gelu_pytorch_tanh": activation = .gelu
        case "gelu": activation = .geluExact
        case let other: throw f.refusal("activation_function", "'\(other)' is not supported (gelu_new, gelu_pytorch_tanh or gelu)")
        }
        let h = try f.int("n_embd")
        return try TransformerConfig(
            numLayers: try f.int("n_layer"), hiddenSize: h, numAttentionHeads: try f.int("n_head"),
            ffnHiddenSize: try f.optionalInt("n_inner") ?? 4 * h,
            layernormEpsilon: Float(try f.double("layer_norm_epsilon", default: 1e-5)), activation: activation,
            hiddenDropout: 0, attentionDropout: 0)
    }

    /// LLaMA and its relatives: RMSNorm, SwiGLU, RoPE, no linear biases; Qwen2 adds q/k/v biases, Qwen3 a
    /// per-head RMSNorm of queries and keys; Mixtral, Qwen2-MoE and Qwen3-MoE are Mistral, Qwen2 and Qwen3 with
    /// mixture-of-experts MLPs (`mixtureOfExperts`).
    static func llamaFamily(_ f: ConfigFields, _ architecture: HuggingFaceGPT.Architecture) throws -> TransformerConfig {
        switch try f.string("hidden_act", default: "silu") {
        case "silu", "swish": break
        case let other: throw f.refusal("hidden_act", "'\(other)' is not supported (silu)")
        }
        // Qwen2's q/k/v biases are built in; LLaMA and Qwen3 add them (and o_proj's) with attention_bias.
        if [.llama, .qwen3, .qwen3MoE].contains(architecture), try f.bool("attention_bias", default: false) {
            throw f.refusal("attention_bias", "true (biases on q/k/v/o projections without MLP biases) is not supported")
        }
        if architecture == .llama, try f.bool("mlp_bias", default: false) {
            throw f.refusal("mlp_bias", "true (biases on the MLP projections) is not supported")
        }
        let heads = try f.int("num_attention_heads"), hidden = try f.int("hidden_size")
        let headDim = try f.optionalInt("head_dim")
        if headDim == nil && heads > 0 && hidden % heads != 0 {
            throw f.refusal("head_dim", "is absent and hidden_size \(hidden) is not divisible by num_attention_heads \(heads)")
        }
        let (base, scaling) = try rope(f)
        let numLayers = try f.int("num_hidden_layers")
        // Qwen2-MoE's q/k/v biases are on unless qkv_bias says otherwise.
        let qkvBias = try architecture == .qwen2 || (architecture == .qwen2MoE && f.bool("qkv_bias", default: true))
        return try TransformerConfig(
            numLayers: numLayers, hiddenSize: hidden, numAttentionHeads: heads,
            numQueryGroups: try f.optionalInt("num_key_value_heads") ?? heads, kvChannels: headDim,
            ffnHiddenSize: try f.int("intermediate_size"), normalization: .rmsNorm,
            layernormEpsilon: Float(try f.double("rms_norm_eps", default: 1e-6)), gatedLinearUnit: true,
            activation: .silu, addBiasLinear: false, addQKVBias: qkvBias, qkLayernorm: architecture.hasQKNorm,
            hiddenDropout: 0, attentionDropout: 0, positionEmbeddingType: .rope, rotaryBase: Float(base),
            ropeScaling: scaling, moe: try mixtureOfExperts(f, architecture, numLayers: numLayers))
    }

    /// `rope_theta` and `rope_scaling` (transformers 4), or `rope_parameters` holding both (transformers 5).
    static func rope(_ f: ConfigFields) throws -> (base: Double, scaling: RopeScaling?) {
        let key = f.isSet("rope_parameters") ? "rope_parameters" : "rope_scaling"
        let parameters = try f.object(key) ?? [:]
        let p = ConfigFields(json: parameters, file: f.file, prefix: key + ".")
        let base = p.isSet("rope_theta") ? try p.double("rope_theta", default: 10000) : try f.double("rope_theta", default: 10000)
        for fields in [f, p] {
            let fraction = try fields.double("partial_rotary_factor", default: 1)
            if fraction != 1 { throw fields.refusal("partial_rotary_factor", "\(fraction) (RoPE on part of each head) is not supported") }
        }
        let typeKey = p.isSet("rope_type") || !p.isSet("type") ? "rope_type" : "type"
        guard !parameters.isEmpty else { return (base, nil) }
        switch try p.string(typeKey, default: "") {
        case "": throw p.refusal(typeKey, "is missing (default, linear or llama3)")
        case "default": return (base, nil)
        case "linear": return (base, .linear(factor: Float(try p.double("factor"))))
        case "llama3":
            return (base, .llama3(factor: Float(try p.double("factor")), lowFreqFactor: Float(try p.double("low_freq_factor")),
                                  highFreqFactor: Float(try p.double("high_freq_factor")),
                                  originalMaxPositionEmbeddings: try p.int("original_max_position_embeddings")))
        case let other:
            throw p.refusal(typeKey, "'\(other)' is not supported (default, linear or llama3): it would rescale the rotary frequencies differently")
        }
    }

    /// Mistral's `sliding_window`, Qwen's `use_sliding_window` (from layer `max_window_layers` on) and
    /// transformers 5's `layer_types`: refused only where a window would hide keys that a position within
    /// `max_position_embeddings` attends to.
    func refuseActiveSlidingWindow(_ f: ConfigFields) throws {
        guard let window = try f.optionalInt("sliding_window"), window < maxPositionEmbeddings else { return }
        let why = "sliding-window attention (sliding_window \(window) < max_position_embeddings \(maxPositionEmbeddings)) is not supported"
        switch architecture {
        case .mistral, .mixtral:
            throw f.refusal("sliding_window", "is set: \(why)")
        case .qwen2, .qwen3, .qwen2MoE, .qwen3MoE:
            let fullLayers = try f.optionalInt("max_window_layers") ?? 0
            if try f.bool("use_sliding_window", default: false), fullLayers < transformer.numLayers {
                throw f.refusal("use_sliding_window", "is true: \(why)")
            }
            if let types = f.json["layer_types"] as? [String], types.contains(where: { $0 != "full_attention" }) {
                throw f.refusal("layer_types", "lists sliding-attention layers: \(why)")
            }
        case .gpt2, .llama: break
        }
    }
}

/// Typed reads of a JSON object's fields; every error names the file and the field (`prefix` + key).
struct ConfigFields {
    let json: [String: Any]
    let file: String
    var prefix = ""

    func refusal(_ key: String, _ why: String) -> CheckpointError { CheckpointError("\(file): \(prefix)\(key) \(why)") }

    /// Present and not null.
    func isSet(_ key: String) -> Bool { json[key].map { !($0 is NSNull) } ?? false }

    private func value<T>(_ key: String, as type: T.Type, _ what: String) throws -> T? {
        guard isSet(key) else { return nil }
        guard let v = json[key] as? T else { throw refusal(key, "is \(json[key]!), not \(what)") }
        return v
    }

    func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else { throw refusal(key, "is missing (an integer is needed)") }
        return v
    }

    func optionalInt(_ key: String) throws -> Int? { try value(key, as: Int.self, "an integer") }

    func double(_ key: String) throws -> Double {
        guard let v = try value(key, as: Double.self, "a number") else { throw refusal(key, "is missing (a number is needed)") }
        return v
    }

    func double(_ key: String, default fallback: Double) throws -> Double { try value(key, as: Double.self, "a number") ?? fallback }
    func bool(_ key: String, default fallback: Bool) throws -> Bool { try value(key, as: Bool.self, "true or false") ?? fallback }
    func string(_ key: String, default fallback: String) throws -> String { try value(key, as: String.self, "a string") ?? fallback }
    func object(_ key: String) throws -> [String: Any]? { try value(key, as: [String: Any].self, "an object") }
}
