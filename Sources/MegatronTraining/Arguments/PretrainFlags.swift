import MegatronData

/// One supported command-line flag and how it sets `PretrainArguments`.
struct Flag {
    let name: String
    let takesValue: Bool
    /// Takes every following word up to the next flag (argparse's `nargs='*'`).
    var takesList = false
    let apply: (inout PretrainArguments, String?) throws -> Void

    static func int(_ name: String, _ key: WritableKeyPath<PretrainArguments, Int>) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try parseInt(name, $1!) }
    }

    static func int(_ name: String, _ key: WritableKeyPath<PretrainArguments, Int?>) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try parseInt(name, $1!) }
    }

    static func float(_ name: String, _ key: WritableKeyPath<PretrainArguments, Float>) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try parseFloat(name, $1!) }
    }

    static func float(_ name: String, _ key: WritableKeyPath<PretrainArguments, Float?>) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try parseFloat(name, $1!) }
    }

    /// Words up to the next flag, joined by the parser with newlines.
    static func list(_ name: String, _ key: WritableKeyPath<PretrainArguments, [String]?>) -> Flag {
        Flag(name: name, takesValue: true, takesList: true) { args, value in
            args[keyPath: key] = value!.split(separator: "\n").map(String.init)
        }
    }

    static func string(_ name: String, _ key: WritableKeyPath<PretrainArguments, String?>) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = $1! }
    }

    static func choice(_ name: String, _ key: WritableKeyPath<PretrainArguments, String>, _ choices: [String]) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try checked(name, $1!, choices) }
    }

    static func choice(_ name: String, _ key: WritableKeyPath<PretrainArguments, String?>, _ choices: [String]) -> Flag {
        Flag(name: name, takesValue: true) { $0[keyPath: key] = try checked(name, $1!, choices) }
    }

    /// A switch that sets `key` to `value` (`store_true` / `store_false`).
    static func set(_ name: String, _ key: WritableKeyPath<PretrainArguments, Bool>, to value: Bool = true) -> Flag {
        Flag(name: name, takesValue: false) { args, _ in args[keyPath: key] = value }
    }

    private static func checked(_ name: String, _ value: String, _ choices: [String]) throws -> String {
        guard choices.contains(value) else {
            throw ArgumentError("\(name) must be one of \(choices.joined(separator: ", ")), got '\(value)'")
        }
        return value
    }

    private static func parseInt(_ name: String, _ text: String) throws -> Int {
        guard let v = Int(text) else { throw ArgumentError("\(name) needs an integer, got '\(text)'") }
        return v
    }

    private static func parseFloat(_ name: String, _ text: String) throws -> Float {
        guard let v = Float(text), v.isFinite else { throw ArgumentError("\(name) needs a number, got '\(text)'") }
        return v
    }
}

/// The flags `pretrain-gpt` implements, with Megatron's spellings.
enum PretrainFlags {
    static let all: [Flag] = [
        .int("--num-layers", \.numLayers),
        .int("--hidden-size", \.hiddenSize),
        .int("--ffn-hidden-size", \.ffnHiddenSize),
        .int("--num-attention-heads", \.numAttentionHeads),
        .set("--group-query-attention", \.groupQueryAttention),
        .int("--num-query-groups", \.numQueryGroups),
        .int("--kv-channels", \.kvChannels),
        .int("--seq-length", \.seqLength),
        .int("--max-position-embeddings", \.maxPositionEmbeddings),
        .choice("--position-embedding-type", \.positionEmbeddingType, ["learned_absolute", "rope", "none"]),
        .float("--rotary-base", \.rotaryBase),
        .float("--rotary-percent", \.rotaryPercent),
        .choice("--normalization", \.normalization, ["LayerNorm", "RMSNorm"]),
        .float("--norm-epsilon", \.normEpsilon),
        .set("--swiglu", \.swiglu),
        .set("--disable-bias-linear", \.addBiasLinear, to: false),
        .set("--add-qkv-bias", \.addQKVBias),
        .set("--qk-layernorm", \.qkLayernorm),
        .set("--untie-embeddings-and-output-weights", \.untieEmbeddingsAndOutputWeights),
        .int("--make-vocab-size-divisible-by", \.makeVocabSizeDivisibleBy),
        .float("--hidden-dropout", \.hiddenDropout),
        .float("--attention-dropout", \.attentionDropout),
        .float("--init-method-std", \.initMethodStd),
        .int("--tensor-model-parallel-size", \.tensorModelParallelSize),
        .int("--pipeline-model-parallel-size", \.pipelineModelParallelSize),
        .int("--context-parallel-size", \.contextParallelSize),
        .int("--expert-model-parallel-size", \.expertModelParallelSize),
        .set("--sequence-parallel", \.sequenceParallel),
        .set("--use-distributed-optimizer", \.useDistributedOptimizer),
        .set("--overlap-grad-reduce", \.overlapGradReduce),
        .set("--overlap-param-gather", \.overlapParamGather),
        .set("--ddp-average-in-collective", \.ddpAverageInCollective),
        .int("--ddp-bucket-size", \.ddpBucketSize),
        .int("--micro-batch-size", \.microBatchSize),
        .int("--global-batch-size", \.globalBatchSize),
        .int("--train-iters", \.trainIters),
        .int("--train-samples", \.trainSamples),
        .int("--eval-iters", \.evalIters),
        .int("--eval-interval", \.evalInterval),
        .int("--exit-interval", \.exitInterval),
        .int("--seed", \.seed),
        .float("--exit-duration-in-mins", \.exitDurationInMins),
        .set("--exit-signal-handler", \.exitSignalHandler),
        .string("--save", \.save),
        .string("--load", \.load),
        .int("--save-interval", \.saveInterval),
        .set("--no-load-optim", \.noLoadOptim),
        .set("--no-load-rng", \.noLoadRNG),
        .set("--finetune", \.finetune),
        .int("--keep-last-checkpoints", \.keepLastCheckpoints),
        .choice("--optimizer", \.optimizer, ["adam", "sgd"]),
        .float("--lr", \.lr),
        .float("--min-lr", \.minLR),
        .choice("--lr-decay-style", \.lrDecayStyle, ["constant", "linear", "cosine", "inverse-square-root", "WSD"]),
        .int("--lr-decay-iters", \.lrDecayIters),
        .int("--lr-warmup-iters", \.lrWarmupIters),
        .float("--lr-warmup-fraction", \.lrWarmupFraction),
        .int("--lr-warmup-samples", \.lrWarmupSamples),
        .float("--lr-warmup-init", \.lrWarmupInit),
        .int("--lr-decay-samples", \.lrDecaySamples),
        .choice("--lr-wsd-decay-style", \.lrWSDDecayStyle, ["exponential", "linear", "cosine", "minus_sqrt"]),
        .int("--lr-wsd-decay-iters", \.lrWSDDecayIters),
        .int("--lr-wsd-decay-samples", \.lrWSDDecaySamples),
        .float("--start-weight-decay", \.startWeightDecay),
        .float("--end-weight-decay", \.endWeightDecay),
        .choice("--weight-decay-incr-style", \.weightDecayIncrStyle, ["constant", "linear", "cosine"]),
        .set("--use-checkpoint-opt_param-scheduler", \.useCheckpointOptParamScheduler),
        .set("--use-checkpoint-opt-param-scheduler", \.useCheckpointOptParamScheduler),
        .set("--override-opt_param-scheduler", \.overrideOptParamScheduler),
        .set("--override-opt-param-scheduler", \.overrideOptParamScheduler),
        .float("--loss-scale", \.lossScale),
        .float("--initial-loss-scale", \.initialLossScale),
        .float("--min-loss-scale", \.minLossScale),
        .int("--loss-scale-window", \.lossScaleWindow),
        .int("--hysteresis", \.hysteresis),
        .float("--weight-decay", \.weightDecay),
        .float("--adam-beta1", \.adamBeta1),
        .float("--adam-beta2", \.adamBeta2),
        .float("--adam-eps", \.adamEps),
        .float("--sgd-momentum", \.sgdMomentum),
        .float("--clip-grad", \.clipGrad),
        .set("--bf16", \.bf16),
        .set("--fp16", \.fp16),
        .choice("--recompute-granularity", \.recomputeGranularity, ["full", "selective"]),
        .choice("--recompute-method", \.recomputeMethod, ["uniform", "block"]),
        .int("--recompute-num-layers", \.recomputeNumLayers),
        .int("--log-interval", \.logInterval),
        .set("--log-throughput", \.logThroughput),
        .string("--tensorboard-dir", \.tensorboardDir),
        .set("--mock-data", \.mockData),
        .list("--data-path", \.dataPath),
        .list("--train-data-path", \.trainDataPath),
        .list("--valid-data-path", \.validDataPath),
        .list("--test-data-path", \.testDataPath),
        .string("--split", \.split),
        .string("--data-cache-path", \.dataCachePath),
        .set("--eod-mask-loss", \.eodMaskLoss),
        .choice("--tokenizer-type", \.tokenizerType, TokenizerOptions.Kind.allCases.map(\.rawValue)),
        .string("--vocab-file", \.vocabFile),
        .string("--merge-file", \.mergeFile),
        .string("--tokenizer-model", \.tokenizerModel),
        .int("--vocab-size", \.vocabSize),
        .string("--tiktoken-pattern", \.tiktokenPattern),
        .int("--tiktoken-num-special-tokens", \.tiktokenNumSpecialTokens),
        .choice("--device", \.device, ["cpu", "cuda"]),
        // checkpoint safety
        .set("--exit-on-missing-checkpoint", \.exitOnMissingCheckpoint),
    ]

    static let byName: [String: Flag] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}
