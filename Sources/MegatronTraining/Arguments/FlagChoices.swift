import MegatronCore
import MegatronData

/// A flag value that is one of a fixed set (`--normalization RMSNorm`): parsed into its case at start-up, so code
/// compares cases, never text, and printed (`--help`, the arguments dump, `args` in a checkpoint) as Megatron spells it.
public protocol FlagChoice: RawRepresentable, Codable, Equatable, Sendable where RawValue == String {}

extension TransformerConfig.SoftmaxType: FlagChoice {}
extension TransformerConfig.Normalization: FlagChoice {}
extension LRDecayStyle: FlagChoice {}
extension WSDDecayStyle: FlagChoice {}
extension WeightDecayIncrementStyle: FlagChoice {}
extension TokenizerOptions.Kind: FlagChoice {}

extension PretrainArguments {
    /// `--position-embedding-type`: the model's positions; `yarn` is rotary embeddings with YaRN's frequencies.
    public enum PositionEmbeddingChoice: String, FlagChoice, CaseIterable {
        case learnedAbsolute = "learned_absolute", rope, yarn, none

        /// The model's position embedding: YaRN's is rotary.
        public var transformerConfig: TransformerConfig.PositionEmbedding {
            switch self {
            case .learnedAbsolute: .learnedAbsolute
            case .rope, .yarn: .rope
            case .none: .none
            }
        }
    }

    /// `--experimental-attention-variant`: both spellings are Gated DeltaNet.
    public enum ExperimentalAttentionVariant: String, FlagChoice, CaseIterable { case gatedDeltaNet = "gated_delta_net", gdn }

    /// `--optimizer`.
    public enum Optimizer: String, FlagChoice, CaseIterable { case adam, sgd }

    /// `--recompute-granularity`: whole layers, or the parts `--recompute-modules` names.
    public enum RecomputeGranularity: String, FlagChoice, CaseIterable { case full, selective }

    /// `--recompute-method`: which layers `--recompute-num-layers` counts.
    public enum RecomputeMethod: String, FlagChoice, CaseIterable { case uniform, block }

    /// `--device`.
    public enum DeviceKind: String, FlagChoice, CaseIterable { case cpu, cuda }

    /// `--transformer-impl`: Megatron's layer implementation; the layers here are the same either way.
    public enum TransformerImplementation: String, FlagChoice, CaseIterable {
        case transformerEngine = "transformer_engine", local
    }

    /// `--attention-backend`: Transformer Engine's attention choice.
    public enum AttentionBackendChoice: String, FlagChoice, CaseIterable { case auto, flash, fused, unfused, local }

    /// `--timing-log-option`: what the timer report shows across ranks.
    public enum TimingLogOption: String, FlagChoice, CaseIterable { case max, minmax, all }
}

extension Flag {
    /// A value that must be the spelling of one of `choices` (argparse's `choices`); another of Megatron's
    /// choices is refused as a feature this build lacks, anything else as a typo, listing the choices.
    static func choice<Choice: FlagChoice>(_ name: String, _ key: WritableKeyPath<PretrainArguments, Choice>,
                                           _ choices: [Choice]) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parse(name, $1!, choices) },
             metavar: choices.map(\.rawValue).joined(separator: "|"), defaultText: { $0[keyPath: key].rawValue })
    }

    static func choice<Choice: FlagChoice>(_ name: String, _ key: WritableKeyPath<PretrainArguments, Choice?>,
                                           _ choices: [Choice]) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parse(name, $1!, choices) },
             metavar: choices.map(\.rawValue).joined(separator: "|"), defaultText: { $0[keyPath: key]?.rawValue })
    }

    private static func parse<Choice: FlagChoice>(_ name: String, _ value: String, _ choices: [Choice]) throws -> Choice {
        let spelled = try checked(name, value, choices.map(\.rawValue))
        return choices.first { $0.rawValue == spelled }!
    }
}
