import MegatronCore
import MegatronData

/// One supported command-line flag: how it sets `PretrainArguments`, and what `--help` and the start-up log say
/// about it.
struct Flag {
    let name: String
    let takesValue: Bool
    /// Takes every following word up to the next flag (argparse's `nargs='*'`).
    var takesList = false
    let apply: (inout PretrainArguments, String?) throws -> Void
    /// The value's placeholder in `--help` (`N`, `X`, `a|b`); nil for a switch.
    var metavar: String?
    /// The default `--help` shows, read from `PretrainArguments()`; nil when there is none to show.
    var defaultText: (PretrainArguments) -> String? = { _ in nil }
    /// What the start-up log says after a given flag whose meaning here differs from Megatron's (an
    /// implementation choice or a no-op), from its value; nil when it means what it means in Megatron.
    var note: (String?) -> String? = { _ in nil }

    static func int(_ name: String, _ key: WritableKeyPath<PretrainArguments, Int>) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parseInt(name, $1!) },
             metavar: "N", defaultText: { String($0[keyPath: key]) })
    }

    static func int(_ name: String, _ key: WritableKeyPath<PretrainArguments, Int?>) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parseInt(name, $1!) },
             metavar: "N", defaultText: { $0[keyPath: key].map(String.init) })
    }

    /// An integer that must lie in `range` (argparse's integer `choices`).
    static func int(_ name: String, _ key: WritableKeyPath<PretrainArguments, Int>, in range: ClosedRange<Int>) -> Flag {
        Flag(name: name, takesValue: true, apply: { args, value in
            let number = try parseInt(name, value!)
            guard range.contains(number) else {
                throw ArgumentError("\(name) must be one of \(range.map(String.init).joined(separator: ", ")), got \(number)")
            }
            args[keyPath: key] = number
        }, metavar: "N", defaultText: { String($0[keyPath: key]) })
    }

    static func float(_ name: String, _ key: WritableKeyPath<PretrainArguments, Float>) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parseFloat(name, $1!) },
             metavar: "X", defaultText: { shown($0[keyPath: key]) })
    }

    static func float(_ name: String, _ key: WritableKeyPath<PretrainArguments, Float?>) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = try parseFloat(name, $1!) },
             metavar: "X", defaultText: { $0[keyPath: key].map(shown) })
    }

    /// Words up to the next flag, joined by the parser with newlines.
    static func list(_ name: String, _ key: WritableKeyPath<PretrainArguments, [String]?>) -> Flag {
        Flag(name: name, takesValue: true, takesList: true, apply: { args, value in
            args[keyPath: key] = value!.split(separator: "\n").map(String.init)
        }, metavar: "WORD ...")
    }

    static func string(_ name: String, _ key: WritableKeyPath<PretrainArguments, String?>) -> Flag {
        Flag(name: name, takesValue: true, apply: { $0[keyPath: key] = $1! }, metavar: "TEXT",
             defaultText: { $0[keyPath: key] })
    }

    /// A switch that sets `key` to `value` (`store_true` / `store_false`).
    static func set(_ name: String, _ key: WritableKeyPath<PretrainArguments, Bool>, to value: Bool = true) -> Flag {
        Flag(name: name, takesValue: false) { args, _ in args[keyPath: key] = value }
    }

    /// A switch that sets `key` to `value`: Megatron's legacy spellings of a setting
    /// (`--use-rotary-position-embeddings` is `--position-embedding-type rope`).
    static func set<Value>(_ name: String, _ key: WritableKeyPath<PretrainArguments, Value>, to value: Value) -> Flag {
        Flag(name: name, takesValue: false) { args, _ in args[keyPath: key] = value }
    }

    /// A switch accepted and ignored: one of Megatron's implementation choices with nothing to choose here.
    static func ignored(_ name: String, note: String? = nil) -> Flag {
        Flag(name: name, takesValue: false, apply: { _, _ in }, note: { _ in note })
    }

    /// A value flag accepted and ignored, its value checked against `choices` (any integer when nil).
    static func ignored(_ name: String, choices: [String]?, note: String? = nil) -> Flag {
        Flag(name: name, takesValue: true, apply: { _, value in
            if let choices { _ = try checked(name, value!, choices) } else { _ = try parseInt(name, value!) }
        }, metavar: choices?.joined(separator: "|") ?? "N", note: { _ in note })
    }

    /// This flag, with `note` printed at start-up when it is given.
    func noting(_ note: @escaping (String?) -> String?) -> Flag {
        var flag = self
        flag.note = note
        return flag
    }

    /// This integer flag, with values above `limit` refused as `feature`, a feature this build lacks
    /// (reported with the other unsupported flags of the command line).
    func unsupported(above limit: Int, _ feature: String) -> Flag {
        let (name, apply) = (self.name, self.apply)
        return Flag(name: name, takesValue: takesValue, takesList: takesList, apply: { args, value in
            let number = try Flag.parseInt(name, value!)
            if number > limit { throw UnsupportedFeature(feature: feature, usage: "\(name) \(number)") }
            try apply(&args, value)
        }, metavar: metavar, defaultText: defaultText, note: note)
    }

    /// `value` if it is one of `choices`. One of Megatron's other choices is a feature this build lacks.
    static func checked(_ name: String, _ value: String, _ choices: [String]) throws -> String {
        guard choices.contains(value) else {
            if MegatronFlagCatalog.byName[name]?.choices.contains(value) == true {
                throw UnsupportedFeature(feature: "\(name) other than \(choices.joined(separator: ", "))",
                                         usage: "\(name) \(value)")
            }
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

    /// A float default as `--help` shows it: whole numbers without a fraction (2^32 as 4294967296).
    private static func shown(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}

/// A flag (or a value of one) that asks for a feature this build does not have yet.
struct UnsupportedFeature: Error {
    /// What is missing: "pipeline parallelism", "mixture of experts".
    let feature: String
    /// The flag as given, with its value when that is what asks for the feature.
    let usage: String
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
        .choice("--position-embedding-type", \.positionEmbeddingType, [.learnedAbsolute, .rope, .yarn, .none]),
        .float("--rotary-base", \.rotaryBase),
        .float("--rotary-percent", \.rotaryPercent),
        .choice("--normalization", \.normalization, [.layerNorm, .rmsNorm]),
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
        .int("--decoder-first-pipeline-num-layers", \.decoderFirstPipelineNumLayers),
        .int("--decoder-last-pipeline-num-layers", \.decoderLastPipelineNumLayers),
        .set("--account-for-embedding-in-pipeline-split", \.accountForEmbeddingInPipelineSplit),
        .set("--account-for-loss-in-pipeline-split", \.accountForLossInPipelineSplit),
        .int("--num-layers-per-virtual-pipeline-stage", \.numLayersPerVirtualPipelineStage),
        .int("--num-virtual-stages-per-pipeline-rank", \.numVirtualStagesPerPipelineRank),
        .int("--microbatch-group-size-per-virtual-pipeline-stage", \.microbatchGroupSizePerVirtualPipelineStage),
        .set("--no-overlap-p2p-communication", \.overlapP2PCommunication, to: false),
        .set("--overlap-p2p-communication-warmup-flush", \.overlapP2PCommunicationWarmupFlush),
        .int("--context-parallel-size", \.contextParallelSize).unsupported(above: 1, "context parallelism"),
        .int("--expert-model-parallel-size", \.expertModelParallelSize),
        .int("--expert-tensor-parallel-size", \.expertTensorParallelSize),
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
        .choice("--ckpt-format", \.ckptFormat, PretrainArguments.CheckpointFormat.allCases),
        .set("--async-save", \.asyncSave),
        .int("--keep-last-checkpoints", \.keepLastCheckpoints),
        .choice("--optimizer", \.optimizer, PretrainArguments.Optimizer.allCases),
        .float("--lr", \.lr),
        .float("--min-lr", \.minLR),
        .choice("--lr-decay-style", \.lrDecayStyle, LRDecayStyle.allCases),
        .int("--lr-decay-iters", \.lrDecayIters),
        .int("--lr-warmup-iters", \.lrWarmupIters),
        .float("--lr-warmup-fraction", \.lrWarmupFraction),
        .int("--lr-warmup-samples", \.lrWarmupSamples),
        .float("--lr-warmup-init", \.lrWarmupInit),
        .int("--lr-decay-samples", \.lrDecaySamples),
        .choice("--lr-wsd-decay-style", \.lrWSDDecayStyle, WSDDecayStyle.allCases),
        .int("--lr-wsd-decay-iters", \.lrWSDDecayIters),
        .int("--lr-wsd-decay-samples", \.lrWSDDecaySamples),
        .float("--start-weight-decay", \.startWeightDecay),
        .float("--end-weight-decay", \.endWeightDecay),
        .choice("--weight-decay-incr-style", \.weightDecayIncrStyle, WeightDecayIncrementStyle.allCases),
        .set("--use-checkpoint-opt_param-scheduler", \.useCheckpointOptParamScheduler),
        .set("--override-opt_param-scheduler", \.overrideOptParamScheduler),
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
        .choice("--recompute-granularity", \.recomputeGranularity, PretrainArguments.RecomputeGranularity.allCases),
        .choice("--recompute-method", \.recomputeMethod, PretrainArguments.RecomputeMethod.allCases),
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
        .choice("--tokenizer-type", \.tokenizerType, TokenizerOptions.Kind.allCases),
        .string("--vocab-file", \.vocabFile),
        .string("--merge-file", \.mergeFile),
        .string("--tokenizer-model", \.tokenizerModel),
        .int("--vocab-size", \.vocabSize),
        .string("--tiktoken-pattern", \.tiktokenPattern),
        .int("--tiktoken-num-special-tokens", \.tiktokenNumSpecialTokens),
        .choice("--device", \.device, PretrainArguments.DeviceKind.allCases),
        // rope scaling
        .set("--use-rope-scaling", \.useRopeScaling),
        .float("--rope-scaling-factor", \.ropeScalingFactor),
        // model features
        .set("--apply-layernorm-1p", \.applyLayernorm1p),
        .set("--squared-relu", \.squaredRelu),
        .set("--no-bias-gelu-fusion", \.biasGeluFusion, to: false),
        .set("--no-position-embedding", \.addPositionEmbedding, to: false),
        .float("--embedding-init-method-std", \.embeddingInitMethodStd),
        .set("--init-method-xavier-uniform", \.initMethodXavierUniform),
        .float("--decoupled-lr", \.decoupledLR),
        .float("--decoupled-min-lr", \.decoupledMinLR),
        .set("--calculate-per-token-loss", \.calculatePerTokenLoss),
        .list("--rampup-batch-size", \.rampupBatchSize),
        .list("--recompute-modules", \.recomputeModules),
        .set("--recompute-activations", \.recomputeActivations),
        .set("--exit-on-missing-checkpoint", \.exitOnMissingCheckpoint),
        .choice("--exit-signal", \.exitSignal, ExitSignal.allCases),
        // cli-flags: Megatron's legacy spellings.
        .set("--use-rotary-position-embeddings", \.positionEmbeddingType, to: .rope),
        // cli-flags: implementation choices and no-ops, with a start-up note where the meaning differs from Megatron's.
        .ignored("--use-mcore-models"),
        .choice("--transformer-impl", \.transformerImpl, PretrainArguments.TransformerImplementation.allCases).noting { _ in
            "the layers run on this build's own kernels; the model is the same"
        },
        .choice("--attention-backend", \.attentionBackend, PretrainArguments.AttentionBackendChoice.allCases).noting {
            attentionNote($0.flatMap(PretrainArguments.AttentionBackendChoice.init(rawValue:)))
        },
        .ignored("--use-flash-attn", note: attentionNote(.flash)),
        .ignored("--distributed-backend", choices: ["nccl"]),
        .ignored("--no-gradient-accumulation-fusion", note: fusionNote),
        .ignored("--no-masked-softmax-fusion", note: fusionNote),
        .ignored("--no-bias-swiglu-fusion", note: fusionNote),
        .ignored("--no-bias-dropout-fusion", note: fusionNote),
        .ignored("--no-rope-fusion", note: fusionNote),
        .ignored("--no-persist-layer-norm", note: fusionNote),
        .ignored("--cross-entropy-loss-fusion", note: fusionNote),
        .ignored("--cross-entropy-fusion-impl", choices: ["native", "te"], note: fusionNote),
        .ignored("--disable-jit-fuser", note: fusionNote),
        .ignored("--attention-softmax-in-fp32"),
        .ignored("--apply-query-key-layer-scaling"),
        .set("--deterministic-mode", \.deterministicMode),
        .ignored("--no-mmap-bin-files", note: ".bin files are read through mmap all the same (same data)"),
        .ignored("--num-workers", choices: nil, note: "batches are made in the training process, without worker processes"),
        .ignored("--no-create-attention-mask-in-dataloader"),
        .ignored("--manual-gc", note: gcNote),
        .ignored("--manual-gc-interval", choices: nil, note: gcNote),
        .ignored("--no-manual-gc-eval", note: gcNote),
        .ignored("--no-align-grad-reduce"),
        .ignored("--no-align-param-gather"),
        .ignored("--empty-unused-memory-level", choices: ["0", "1", "2"],
                 note: "no effect: the caching allocator keeps freed GPU memory for reuse"),
        .float("--distributed-timeout-minutes", \.distributedTimeoutMinutes),
        .int("--distributed-timeout-seconds-after-init", \.distributedTimeoutSecondsAfterInit),
        .int("--timing-log-level", \.timingLogLevel, in: 0...2),
        .set("--skip-train", \.skipTrain),
        // Logging (cli-logs): Megatron's logging group; --wandb-* and the rest are refused by feature (MegatronFlagCatalog).
        .set("--log-params-norm", \.logParamsNorm),
        .set("--log-num-zeros-in-grad", \.logNumZerosInGrad),
        .set("--log-progress", \.logProgress),
        .choice("--timing-log-option", \.timingLogOption, PretrainArguments.TimingLogOption.allCases),
        .set("--no-barrier-with-level-1-timing", \.barrierWithL1Time, to: false),
        .int("--tensorboard-log-interval", \.tensorboardLogInterval),
        .int("--tensorboard-queue-size", \.tensorboardQueueSize),
        .set("--log-timers-to-tensorboard", \.logTimersToTensorboard),
        .set("--no-log-loss-scale-to-tensorboard", \.logLossScaleToTensorboard, to: false),
        .set("--log-validation-ppl-to-tensorboard", \.logValidationPplToTensorboard),
        .set("--log-memory-to-tensorboard", \.logMemoryToTensorboard),
        .set("--log-world-size-to-tensorboard", \.logWorldSizeToTensorboard),
        .int("--log-memory-interval", \.logMemoryInterval),
        .set("--log-device-memory-used", \.logDeviceMemoryUsed),
        .int("--logging-level", \.loggingLevel),
        .ignored("--no-one-logger"),
        // cli-logs: flags of real configs that are cheap to honour.
        .int("--save-retain-interval", \.saveRetainInterval),
        .int("--padded-vocab-size", \.paddedVocabSize),
        .ignored("--accumulate-allreduce-grads-in-fp32",
                 note: "no effect: gradients are accumulated and reduced in fp32 here, as the flag asks (--grad-reduce-in-bf16 wins, as in Megatron)"),
        .ignored("--profile", note: profileNote),
        .ignored("--profile-step-start", choices: nil, note: profileNote),
        .ignored("--profile-step-end", choices: nil, note: profileNote),
        // train-flags: batch-size schedule, bf16 gradients, qk-layernorm weight decay, GEMM reductions, TP overlap.
        .string("--step-batch-size-schedule", \.stepBatchSizeSchedule),
        .set("--grad-reduce-in-bf16", \.gradReduceInBF16),
        .set("--apply-wd-to-qk-layernorm", \.applyWDToQKLayernorm),
        Flag(name: "--no-weight-decay-cond-type", takesValue: true, apply: { args, value in
            _ = try Flag.checked("--no-weight-decay-cond-type", value!, ["apply_wd_to_qk_layernorm"])
            args.applyWDToQKLayernorm = true
        }, metavar: "apply_wd_to_qk_layernorm", note: { _ in "deprecated in Megatron: means --apply-wd-to-qk-layernorm" }),
        .set("--disable-bf16-reduced-precision-matmul", \.disableBF16ReducedPrecisionMatmul),
        .set("--tp-comm-overlap", \.tpCommOverlap).noting { _ in
            "tensor-parallel communication is not overlapped with the GEMMs here (no userbuffers); the run is otherwise identical"
        },
        .string("--tp-comm-overlap-cfg", \.tpCommOverlapCfg),
        // gated delta net
        .choice("--experimental-attention-variant", \.experimentalAttentionVariant, [.gatedDeltaNet, .gdn]),
        .string("--linear-attention-freq", \.linearAttentionFreq),
        .int("--linear-conv-kernel-dim", \.linearConvKernelDim),
        .int("--linear-key-head-dim", \.linearKeyHeadDim),
        .int("--linear-value-head-dim", \.linearValueHeadDim),
        .int("--linear-num-key-heads", \.linearNumKeyHeads),
        .int("--linear-num-value-heads", \.linearNumValueHeads),
        .set("--attention-output-gate", \.attentionOutputGate),
        // gpt-oss
        Flag(name: "--rope-type", takesValue: true, apply: { args, value in
            guard value == "rope" else {
                throw ArgumentError("--rope-type \(value!): common attention takes only rope (Megatron asserts so; yarn is "
                    + "multi-latent attention's); for YaRN positions use --position-embedding-type yarn")
            }
            args.ropeType = value
        }, metavar: "rope"),
        .set("--quick-geglu", \.quickGeglu),
        .float("--glu-linear-offset", \.gluLinearOffset),
        .float("--activation-func-clamp-value", \.activationFuncClampValue),
        .choice("--softmax-type", \.softmaxType, [.vanilla, .offByOne, .learnable]),
        .string("--window-size", \.windowSize),
        .string("--window-attn-skip-freq", \.windowAttnSkipFreq),
        .ignored("--export-force-local-attention", note: "attention runs on this build's fused kernels, with the math of "
                 + "Megatron's local DotProductAttention (which the flag picks for ModelOpt's model builder)"),
        .set("--enable-gpt-oss", \.enableGptOss).noting { _ in
            "no effect: Megatron applies its gpt-oss YaRN settings only in ModelOpt's model builder (a ModelOpt checkpoint "
                + "or distillation), not in pretrain_gpt's; positions follow --position-embedding-type (yarn for YaRN)"
        },
        .float("--rotary-scaling-factor", \.rotaryScalingFactor),
        .int("--yarn-original-max-position-embeddings", \.yarnOriginalMaxPositionEmbeddings),
        .float("--yarn-beta-fast", \.yarnBetaFast),
        .float("--yarn-beta-slow", \.yarnBetaSlow),
        .set("--yarn-correction-range-round-to-int", \.yarnCorrectionRangeRoundToInt, to: true),
        .set("--no-yarn-correction-range-round-to-int", \.yarnCorrectionRangeRoundToInt, to: false),
        .float("--mscale", \.mscale),
        .float("--mscale-all-dim", \.mscaleAllDim),
        // mixture of experts
        .int("--num-experts", \.numExperts),
        .int("--moe-ffn-hidden-size", \.moeFFNHiddenSize),
        .int("--moe-router-topk", \.moeRouterTopk),
        Flag(name: "--moe-router-score-function", takesValue: true, apply: { args, value in
            args.moeRouterScoreFunction = try Flag.checked("--moe-router-score-function", value!, ["softmax", "sigmoid"])
        }, metavar: "softmax|sigmoid", defaultText: { $0.moeRouterScoreFunction }),
        .set("--moe-router-pre-softmax", \.moeRouterPreSoftmax),
        .float("--moe-router-topk-scaling-factor", \.moeRouterTopkScalingFactor),
        .int("--moe-router-num-groups", \.moeRouterNumGroups),
        .int("--moe-router-group-topk", \.moeRouterGroupTopk),
        .list("--moe-router-load-balancing-type", \.moeRouterLoadBalancingType),
        .list("--moe-aux-loss-coeff", \.moeAuxLossCoeff),
        .float("--moe-z-loss-coeff", \.moeZLossCoeff),
        .set("--moe-router-enable-expert-bias", \.moeRouterEnableExpertBias),
        .float("--moe-router-bias-update-rate", \.moeRouterBiasUpdateRate),
        .ignored("--moe-router-dtype", choices: ["fp32"], note: "the router's logits and routing run in fp32 here"),
        .string("--moe-expert-capacity-factor", \.moeExpertCapacityFactor),
        Flag(name: "--moe-token-drop-policy", takesValue: true, apply: { args, value in
            args.moeTokenDropPolicy = try Flag.checked("--moe-token-drop-policy", value!, ["probs", "position"])
        }, metavar: "probs|position", defaultText: { $0.moeTokenDropPolicy }),
        .set("--moe-pad-expert-input-to-capacity", \.moePadExpertInputToCapacity),
        .int("--moe-shared-expert-intermediate-size", \.moeSharedExpertIntermediateSize),
        .set("--moe-shared-expert-gate", \.moeSharedExpertGate),
        .string("--moe-layer-freq", \.moeLayerFreq),
        .set("--moe-grouped-gemm", \.moeGroupedGemm),
        .set("--moe-shared-expert-overlap", \.moeSharedExpertOverlap).noting { _ in
            "the shared expert runs after the token dispatch here, not overlapped with its communication; the same result"
        },
        .ignored("--moe-permute-fusion", note: "tokens are permuted by one gather and put back by one index-add, unfused; the same result"),
        Flag(name: "--moe-token-dispatcher-type", takesValue: true, apply: { args, value in
            args.moeTokenDispatcherType = try Flag.checked("--moe-token-dispatcher-type", value!, ["allgather", "alltoall"])
        }, metavar: "allgather|alltoall", defaultText: { $0.moeTokenDispatcherType }),
    ] + fp8

    static let fusionNote = "no effect: Megatron's kernel-fusion switches; this build runs its own fused kernels, with the same math"
    static let profileNote = "no effect: this build opens no CUDA profiler range; profile the whole run (nsys without "
        + "--capture-range=cudaProfilerApi)"
    static let gcNote = "no effect: Swift frees memory by reference counting; there is no garbage collector to schedule"

    /// Where `--attention-backend` (Transformer Engine's choice) sends attention here.
    static func attentionNote(_ value: PretrainArguments.AttentionBackendChoice?) -> String? {
        switch value {
        case .flash: "attention runs on this build's flash-attention kernels (as MEGATRON_ATTENTION=kernels)"
        case .fused: "attention runs on cuDNN's fused attention (as MEGATRON_ATTENTION=cudnn)"
        case .unfused, .local: "attention runs fused all the same (same math, without keeping [s, s] scores)"
        case .auto, nil: nil
        }
    }

    /// Supported flags by every spelling, Megatron's aliases included (`--disable-foo` for `--no-foo`).
    static let byName: [String: Flag] = {
        var flags = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
        for megatron in MegatronFlagCatalog.all {
            guard let flag = megatron.names.lazy.compactMap({ flags[$0] }).first else { continue }
            for name in megatron.names where flags[name] == nil { flags[name] = flag }
        }
        return flags
    }()
}
