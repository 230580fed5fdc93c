/// Megatron-LM's `--yaml-cfg` files (`megatron/training/yaml_arguments.py`): argparse dests at the top level,
/// `TransformerConfig` fields under `language_model:` and `ModelParallelConfig` fields under `model_parallel:`.
///
/// Such a file lists every field, most at their defaults and many for features this build lacks; a field asks
/// for its feature only when it is set to something else. So a field of an unsupported flag is passed on
/// (and refused with its feature) only when its value is neither null, false, zero, empty nor Megatron's
/// default; the dataclasses' fields that the program fills itself are skipped.
enum MegatronYAML {
    static let sections = ["language_model", "model_parallel"]

    /// Whether `mapping` is in this shape (it has a section).
    static func isNested(_ mapping: [String: Any]) -> Bool {
        sections.contains { mapping[$0] is [String: Any] }
    }

    /// The command-line words of a file in this shape.
    static func flags(_ mapping: [String: Any]) throws -> [String] {
        var fields: [(String, Any)] = []
        for key in ConfigFile.sortedKeys(mapping) {
            if sections.contains(key), let section = mapping[key] as? [String: Any] {
                let model = key == "language_model"
                for field in ConfigFile.sortedKeys(section) {
                    fields += model ? try transformerField(field, section[field]!, in: section) : [(field, section[field]!)]
                }
            } else {
                fields.append((key, mapping[key]!))
            }
        }
        return try fields.flatMap { key, value in
            try asksForSomething(key, value) ? ConfigFile.words(key: key, value: value) : []
        }
    }

    /// `TransformerConfig` fields named differently from their argparse dests.
    static let renamedFields = ["layernorm_epsilon": "norm_epsilon", "layernorm_zero_centered_gamma": "apply_layernorm_1p",
                                "num_moe_experts": "num_experts"]

    /// Fields that hold what the program fills in itself (dtypes from --bf16 / --fp16, functions, timers,
    /// pipeline bookkeeping Megatron's loader overwrites): whatever a file says, they choose nothing.
    static let programFields: Set<String> = [
        "params_dtype", "pipeline_dtype", "autocast_dtype", "timers", "finalize_model_grads_func", "grad_scale_func",
        "no_sync_func", "grad_sync_func", "param_sync_func", "_cpu_offloading_context", "deallocate_pipeline_outputs",
        "variable_seq_lengths", "batch_p2p_comm", "overlap_p2p_comm", "memory_efficient_layer_norm",
    ]

    /// Fields that are no argparse dest, at the values that ask for nothing (or Megatron's former defaults).
    static let neutralValues = ["barrier_with_L1_time": "true", "batch_p2p_sync": "true", "cpu_offloading_activations": "true",
                                "tp_comm_atomic_ag": "true", "tp_comm_atomic_rs": "true", "profile_ranks": "0"]

    /// One `language_model` field as top-level keys: renamed to its dest, or (activation function, fusions,
    /// initialization) translated to the flags Megatron's YAML loader derives from it.
    static func transformerField(_ field: String, _ value: Any, in section: [String: Any]) throws -> [(String, Any)] {
        let activation = section["activation_func"].flatMap(ConfigFile.text) ?? "gelu"
        switch field {
        case "activation_func":
            switch activation {
            case "swiglu": return [("swiglu", true)]
            case "squaredrelu": return [("squared_relu", true)]
            case "gelu": return []
            default: throw ArgumentError("language_model.activation_func: '\(activation)' is none of swiglu, squaredrelu, gelu")
            }
        case "gated_linear_unit":
            guard ConfigFile.text(value) != "true" || activation == "swiglu" else {
                throw ArgumentError("language_model.gated_linear_unit: a gated linear unit needs activation_func: swiglu here")
            }
            return []
        case "bias_activation_fusion":
            // The GeLU fusion switch; with SwiGLU, bias_swiglu_fusion decides.
            return activation == "swiglu" ? [] : [("bias_gelu_fusion", value)]
        case "persist_layer_norm":
            return [("no_persist_layer_norm", ConfigFile.text(value) == "false")]
        case "init_method":
            return [("init_method_xavier_uniform", ConfigFile.text(value) == "xavier_uniform")]
        default:
            return [(renamedFields[field] ?? field, value)]
        }
    }

    /// Whether `key: value` asks for anything: a supported flag with a value always does; another field only
    /// when set to something other than its default (null, false or zero where it has none).
    static func asksForSomething(_ key: String, _ value: Any) -> Bool {
        guard let text = ConfigFile.text(value), !programFields.contains(key), neutralValues[key] != text else { return false }
        let (name, megatron, _) = ConfigFile.flag(forKey: key)
        if PretrainFlags.byName[name] != nil { return true }
        if let megatron, megatron.defaultValue != nil { return !megatron.isDefault(text) }
        return !["false", "0", "0.0"].contains(text.lowercased())
    }
}
