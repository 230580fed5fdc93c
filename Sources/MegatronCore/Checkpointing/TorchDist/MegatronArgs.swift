import Foundation
import MegatronTensor

/// The `args` (`argparse.Namespace`) of Megatron-LM's checkpoints: the fields its loader reads
/// (`check_checkpoint_args`, `load_checkpoint`, `--use-checkpoint-args`), written from a model description and read
/// back into one.
public enum MegatronArgs {
    /// A Namespace describing `manifest`'s model, saved whole (tensor and pipeline parallel size 1), with
    /// `no_save_optim` / `no_save_rng` set (Megatron-LM does not read this build's optimizer state), then `extra`.
    static func namespace(_ manifest: CheckpointManifest, extra: [(String, PickleValue)]) -> PickleValue {
        guard let c = manifest.modelConfig else { return .none }
        var fields: [(String, PickleValue)] = [
            ("num_layers", .int(c.numLayers)), ("hidden_size", .int(c.hiddenSize)), ("ffn_hidden_size", .int(c.ffnHiddenSize)),
            ("num_attention_heads", .int(c.numAttentionHeads)), ("group_query_attention", .bool(c.numQueryGroups != c.numAttentionHeads)),
            ("num_query_groups", .int(c.numQueryGroups)), ("kv_channels", .int(c.kvChannels)),
            ("max_position_embeddings", .int(manifest.maxPositionEmbeddings ?? 0)),
            ("position_embedding_type", .string(c.positionEmbeddingType.rawValue)),
            ("add_position_embedding", .bool(c.positionEmbeddingType == .learnedAbsolute)),
            ("normalization", .string(c.normalization.rawValue)), ("norm_epsilon", .float(Double(c.layernormEpsilon))),
            ("apply_layernorm_1p", .bool(c.layernormZeroCenteredGamma)),
            ("swiglu", .bool(c.gatedLinearUnit && c.activation == .silu)), ("bias_gelu_fusion", .bool(c.activation == .gelu)),
            ("add_bias_linear", .bool(c.addBiasLinear)), ("add_qkv_bias", .bool(c.addQKVBias)), ("qk_layernorm", .bool(c.qkLayernorm)),
            ("rotary_base", .int(Int(c.rotaryBase))), ("rotary_percent", .float(Double(c.rotaryPercent))),
            ("hidden_dropout", .float(Double(c.hiddenDropout))), ("attention_dropout", .float(Double(c.attentionDropout))),
            ("untie_embeddings_and_output_weights", .bool(manifest.untieEmbeddingsAndOutputWeights ?? false)),
            ("padded_vocab_size", .int(manifest.paddedVocabSize ?? 0)), ("vocab_size", .int(manifest.vocabSize ?? 0)),
            ("params_dtype", .global(PickleGlobal("torch", c.paramsDType.torchName?.rawValue ?? "float32"))),
            ("bf16", .bool(c.paramsDType == .bfloat16)), ("fp16", .bool(c.paramsDType == .float16)),
            ("tensor_model_parallel_size", .int(1)), ("pipeline_model_parallel_size", .int(1)),
            ("consumed_train_samples", .int(manifest.consumedSamples ?? 0)), ("consumed_valid_samples", .int(0)),
            ("no_save_optim", .bool(true)), ("no_save_rng", .bool(true)), ("ckpt_format", .string("torch_dist")),
        ]
        fields += moeFields(c.moe)
        let names = Set(extra.map(\.0))
        fields.removeAll { names.contains($0.0) }
        return .object(PickleObject(PickleGlobals.namespace, state: .stringDict(fields + extra), isNewObject: true))
    }

    /// The model description (and consumed samples) Megatron-LM's `args` give; fields the loader cannot do without
    /// are errors naming them.
    static func manifest(_ args: PickleValue, source: String) throws -> CheckpointManifest {
        func int(_ field: String) throws -> Int {
            guard let v = args.attribute(field)?.intValue else { throw CheckpointError("\(source): args.\(field) is missing or not an integer") }
            return v
        }
        func optionalInt(_ field: String) -> Int? { args.attribute(field)?.intValue }
        func flag(_ field: String, _ fallback: Bool) -> Bool { args.attribute(field)?.boolValue ?? fallback }
        func number(_ field: String) -> Float? { args.attribute(field)?.doubleValue.map(Float.init) }
        let heads = try int("num_attention_heads")
        let swiglu = flag("swiglu", false)
        guard let normalization = TransformerConfig.Normalization(rawValue: args.attribute("normalization")?.stringValue ?? "LayerNorm"),
              let position = TransformerConfig.PositionEmbedding(rawValue: args.attribute("position_embedding_type")?.stringValue ?? "learned_absolute")
        else { throw CheckpointError("\(source): args.normalization or args.position_embedding_type is one this build does not build") }
        let dtype: DType = flag("bf16", false) ? .bfloat16 : (flag("fp16", false) ? .float16 : .float32)
        let addBias = flag("add_bias_linear", true)
        let layers = try int("num_layers")
        let moe = try self.moe(args, numLayers: layers, ffnHiddenSize: optionalInt("ffn_hidden_size") ?? 4 * (try int("hidden_size")), source: source)
        let config: TransformerConfig
        do {
            config = try TransformerConfig(
                numLayers: layers, hiddenSize: try int("hidden_size"), numAttentionHeads: heads,
                numQueryGroups: flag("group_query_attention", false) ? optionalInt("num_query_groups") : nil,
                kvChannels: optionalInt("kv_channels"), ffnHiddenSize: optionalInt("ffn_hidden_size"), normalization: normalization,
                layernormEpsilon: number("norm_epsilon") ?? 1e-5, gatedLinearUnit: swiglu,
                activation: swiglu ? .silu : (flag("bias_gelu_fusion", true) ? .gelu : .geluExact),
                addBiasLinear: addBias, addQKVBias: flag("add_qkv_bias", false) || addBias, qkLayernorm: flag("qk_layernorm", false),
                hiddenDropout: number("hidden_dropout") ?? 0.1, attentionDropout: number("attention_dropout") ?? 0.1,
                positionEmbeddingType: position, rotaryBase: number("rotary_base") ?? 10000, rotaryPercent: number("rotary_percent") ?? 1,
                paramsDType: dtype, layernormZeroCenteredGamma: flag("apply_layernorm_1p", false), moe: moe)
        } catch let error as ConfigError {
            throw CheckpointError("\(source): args describe no model this build builds: \(error.description)")
        }
        var manifest = CheckpointManifest()
        manifest.modelConfig = config
        let padded = try int("padded_vocab_size")
        manifest.paddedVocabSize = padded
        manifest.vocabSize = optionalInt("vocab_size").flatMap { $0 > 0 && $0 <= padded ? $0 : nil } ?? padded
        manifest.maxPositionEmbeddings = optionalInt("max_position_embeddings") ?? optionalInt("seq_length") ?? 0
        manifest.untieEmbeddingsAndOutputWeights = flag("untie_embeddings_and_output_weights", false)
        manifest.consumedSamples = optionalInt("consumed_train_samples") ?? 0
        return manifest
    }
}
