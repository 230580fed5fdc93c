import MegatronCore
import MegatronData

/// The settings of a `pretrain-gpt` run, named after Megatron-LM's flags (`--num-layers` -> `numLayers`).
///
/// Defaults are Megatron's, except where Megatron requires a value (model shape, batch, iterations, lr):
/// there the embedded default run's small model fills in, so `megatron pretrain-gpt` with no flags trains.
public struct PretrainArguments: Equatable, Sendable, Codable {
    // Model shape.
    public var numLayers = 4
    public var hiddenSize = 128
    public var ffnHiddenSize: Int?
    public var numAttentionHeads = 4
    public var groupQueryAttention = false
    public var numQueryGroups = 1
    public var kvChannels: Int?
    public var seqLength = 128
    public var maxPositionEmbeddings: Int?
    public var positionEmbeddingType: PositionEmbeddingChoice = .learnedAbsolute
    public var rotaryBase: Float = 10000
    public var rotaryPercent: Float = 1
    public var normalization: TransformerConfig.Normalization = .layerNorm
    public var normEpsilon: Float = 1e-5
    public var swiglu = false
    public var addBiasLinear = true
    public var addQKVBias = false
    public var qkLayernorm = false
    public var untieEmbeddingsAndOutputWeights = false
    public var makeVocabSizeDivisibleBy = 128
    public var hiddenDropout: Float = 0.1
    public var attentionDropout: Float = 0.1
    public var initMethodStd: Float = 0.02
    /// `--use-rope-scaling`: Llama 3.x frequency scaling of RoPE, by `--rope-scaling-factor`.
    public var useRopeScaling = false
    public var ropeScalingFactor: Float = 8
    /// Norm weights applied as `1 + w` and initialized to zero (`--apply-layernorm-1p`).
    public var applyLayernorm1p = false
    public var squaredRelu = false
    /// Megatron's fused bias + tanh-approximated GeLU; off (`--no-bias-gelu-fusion`, or no bias), the MLP uses the exact erf GeLU.
    public var biasGeluFusion = true
    /// Off with `--no-position-embedding`, which Megatron accepts only with rotary embeddings.
    public var addPositionEmbedding = true
    public var embeddingInitMethodStd: Float?
    public var initMethodXavierUniform = false
    // gated delta net
    /// `gated_delta_net` or `gdn`: the layers `--linear-attention-freq` picks are Gated DeltaNet (`--linear-*` sizes).
    public var experimentalAttentionVariant: ExperimentalAttentionVariant?
    /// An integer N (every N-th layer attention, the others Gated DeltaNet) or a list expression of 1s and 0s.
    public var linearAttentionFreq: String?
    public var linearConvKernelDim = 4
    public var linearKeyHeadDim = 128
    public var linearValueHeadDim = 128
    public var linearNumKeyHeads = 16
    public var linearNumValueHeads = 32
    /// Attention heads scaled by sigmoid of a gate from `linear_qkv` (`--attention-output-gate`).
    public var attentionOutputGate = false
    // gpt-oss
    /// `rope` (the only type Megatron's common attention takes; `yarn` is multi-latent attention's).
    public var ropeType: String?
    /// A gated MLP with x·sigmoid(1.702x) on its gate half (`--quick-geglu`).
    public var quickGeglu = false
    public var gluLinearOffset: Float = 0
    public var activationFuncClampValue: Float?
    public var softmaxType: TransformerConfig.SoftmaxType = .vanilla
    /// `--window-size` as given (`"127,0"`): the sliding window's left and right extents.
    public var windowSize: String?
    /// `--window-attn-skip-freq` as given: `N` or a Python list expression (`"[1,1,0]*2"`).
    public var windowAttnSkipFreq: String?
    /// ModelOpt's `--enable-gpt-oss` (YaRN settings in its model builder only; accepted, see `PretrainFlags`).
    public var enableGptOss = false
    /// YaRN (`--position-embedding-type yarn`): `--rotary-scaling-factor` and the rest, Megatron's defaults when nil.
    public var rotaryScalingFactor: Float = 1
    public var yarnOriginalMaxPositionEmbeddings: Int?
    public var yarnBetaFast: Float?
    public var yarnBetaSlow: Float?
    public var yarnCorrectionRangeRoundToInt: Bool?
    public var mscale: Float = 1
    public var mscaleAllDim: Float = 0
    // mixture of experts
    public var numExperts: Int?
    public var moeFFNHiddenSize: Int?
    public var moeRouterTopk = 2
    /// `softmax` or `sigmoid` (`--moe-router-score-function`).
    public var moeRouterScoreFunction = "softmax"
    public var moeRouterPreSoftmax = false
    public var moeRouterTopkScalingFactor: Float?
    public var moeRouterNumGroups: Int?
    public var moeRouterGroupTopk: Int?
    /// `--moe-router-load-balancing-type` and `--moe-aux-loss-coeff` as given (one word or a list each).
    public var moeRouterLoadBalancingType: [String]?
    public var moeAuxLossCoeff: [String]?
    public var moeZLossCoeff: Float?
    public var moeRouterEnableExpertBias = false
    public var moeRouterBiasUpdateRate: Float = 1e-3
    /// `--moe-expert-capacity-factor` as given (kept as text so the capacity's ceiling sees Python's double).
    public var moeExpertCapacityFactor: String?
    public var moeTokenDropPolicy = "probs"
    public var moePadExpertInputToCapacity = false
    public var moeSharedExpertIntermediateSize: Int?
    public var moeSharedExpertGate = false
    /// `--moe-shared-expert-overlap`: Megatron overlaps the shared expert with the token dispatch; the same result.
    public var moeSharedExpertOverlap = false
    /// `--moe-grouped-gemm`: the experts' FC1 and FC2 as grouped GEMMs; the parameters keep SequentialMLP's names.
    public var moeGroupedGemm = false
    /// `--moe-layer-freq` as given: `N` or a Python list expression (`"([0]+[1]*23)"`).
    public var moeLayerFreq: String?

    // FP8 (FP8Arguments.swift).
    /// `--fp8-format`: FP8 is off without it.
    public var fp8Format: FP8Recipe.Format?
    public var fp8Recipe: FP8Recipe.Scaling = .delayed
    public var fp8Margin = 0
    public var fp8AmaxHistoryLen = 1
    public var fp8AmaxComputeAlgo: FP8Recipe.AmaxComputeAlgo = .mostRecent
    /// Off with `--no-fp8-wgrad`.
    public var fp8Wgrad = true
    public var firstLastLayersBF16 = false
    public var numLayersAtStartInBF16 = 1
    public var numLayersAtEndInBF16 = 1

    // Batch and iterations.
    public var microBatchSize = 8
    public var globalBatchSize: Int?
    public var trainIters: Int?
    public var trainSamples: Int?
    public var evalIters = 100
    public var evalInterval: Int?
    public var exitInterval: Int?
    public var exitDurationInMins: Float?
    public var exitSignalHandler = false
    public var seed = 1234
    /// `<start batch size> <increment> <ramp-up samples>` (`--rampup-batch-size`), as the words were given.
    public var rampupBatchSize: [String]?
    /// Gradients of the token-summed loss divided by the tokens of the whole global batch, not averaged per micro-batch.
    public var calculatePerTokenLoss = false
    public var exitOnMissingCheckpoint = false
    /// The signal `--exit-signal-handler` listens for, by name.
    public var exitSignal: ExitSignal = .sigterm
    /// Evaluate on the validation and test sets without training (`--skip-train`).
    public var skipTrain = false
    /// `--step-batch-size-schedule`: `THRESHOLD:BATCH ...`, the global batch from each threshold (tokens) on.
    public var stepBatchSizeSchedule: String?

    // Optimizer and learning-rate schedule.
    public var optimizer: Optimizer = .adam
    public var lr: Float?
    public var minLR: Float = 0
    public var lrDecayStyle: LRDecayStyle = .linear
    public var lrDecayIters: Int?
    public var lrWarmupIters = 0
    public var lrWarmupFraction: Float?
    public var lrWarmupSamples = 0
    public var lrWarmupInit: Float = 0
    public var lrDecaySamples: Int?
    public var lrWSDDecayStyle: WSDDecayStyle = .exponential
    public var lrWSDDecayIters: Int?
    public var lrWSDDecaySamples: Int?
    public var startWeightDecay: Float?
    public var endWeightDecay: Float?
    public var weightDecayIncrStyle: WeightDecayIncrementStyle = .constant
    public var useCheckpointOptParamScheduler = false
    public var overrideOptParamScheduler = false
    public var weightDecay: Float = 0.01
    public var adamBeta1: Float = 0.9
    public var adamBeta2: Float = 0.999
    public var adamEps: Float = 1e-8
    public var sgdMomentum: Float = 0.9
    public var clipGrad: Float = 1.0
    /// Learning rate (and minimum) of the word embeddings and the output layer.
    public var decoupledLR: Float?
    public var decoupledMinLR: Float?
    /// `--apply-wd-to-qk-layernorm`: the q/k layer-norm weights keep their weight decay.
    public var applyWDToQKLayernorm = false

    // Precision and memory.
    public var bf16 = false
    public var fp16 = false
    /// A constant loss scale for fp16; dynamic scaling when nil.
    public var lossScale: Float?
    public var initialLossScale: Float = 4_294_967_296
    public var minLossScale: Float = 1
    public var lossScaleWindow = 1000
    public var hysteresis = 2
    public var recomputeGranularity: RecomputeGranularity?
    public var recomputeMethod: RecomputeMethod?
    public var recomputeNumLayers: Int?
    /// Submodules `--recompute-granularity selective` recomputes; Megatron's default `core_attn` when nil.
    public var recomputeModules: [String]?
    /// `--recompute-activations`: Megatron's alias for `--recompute-granularity selective` (it wins over that flag).
    public var recomputeActivations = false
    /// Run-to-run identical kernels where a faster order-dependent one exists (`--deterministic-mode`).
    public var deterministicMode = false
    /// Megatron's layer implementation (`--transformer-impl`); the layers here are the same either way.
    public var transformerImpl: TransformerImplementation = .transformerEngine
    /// Transformer Engine's attention choice (`--attention-backend`): flash picks our flash kernels, fused cuDNN's.
    public var attentionBackend: AttentionBackendChoice = .auto
    /// `--grad-reduce-in-bf16`: with `--bf16`, gradients are accumulated and reduced in bf16 (the DDP grad buffer).
    public var gradReduceInBF16 = false
    /// `--disable-bf16-reduced-precision-matmul`: bf16 GEMMs may not reduce split-K partial sums in bf16.
    public var disableBF16ReducedPrecisionMatmul = false

    // Parallelism (the world size comes from the launcher: `megatron launch` or torchrun / SLURM variables).
    public var tensorModelParallelSize = 1
    public var pipelineModelParallelSize = 1
    /// Layers of the first / last pipeline stage when they differ from the even split
    /// (`--decoder-first-pipeline-num-layers` / `--decoder-last-pipeline-num-layers`).
    public var decoderFirstPipelineNumLayers: Int?
    public var decoderLastPipelineNumLayers: Int?
    /// Count the embedding / the loss as one layer each when splitting the layers over the pipeline stages.
    public var accountForEmbeddingInPipelineSplit = false
    public var accountForLossInPipelineSplit = false
    /// Interleaved 1F1B: layers per model chunk (`--num-layers-per-virtual-pipeline-stage`) or model chunks
    /// per pipeline rank (`--num-virtual-stages-per-pipeline-rank`), at most one of them.
    public var numLayersPerVirtualPipelineStage: Int?
    public var numVirtualStagesPerPipelineRank: Int?
    /// Micro-batches each model chunk runs in a row in the interleaved schedule (default: the pipeline size).
    public var microbatchGroupSizePerVirtualPipelineStage: Int?
    /// Megatron's `overlap_p2p_comm`: the interleaved schedule posts its transfers and waits for them only
    /// when it uses them (on by default; `--no-overlap-p2p-communication` batches them). 1F1B always batches.
    public var overlapP2PCommunication = true
    /// Megatron's `overlap_p2p_comm_warmup_flush` (`--overlap-p2p-communication-warmup-flush`): the interleaved
    /// schedule's warm-up and flush post their receives a pass ahead as well (needs `overlapP2PCommunication`).
    public var overlapP2PCommunicationWarmupFlush = false
    public var contextParallelSize = 1
    public var expertModelParallelSize = 1
    /// `--expert-tensor-parallel-size`: nil follows `--tensor-model-parallel-size`, as in Megatron.
    public var expertTensorParallelSize: Int?
    /// `--moe-token-dispatcher-type`: allgather (Megatron's default) or alltoall.
    public var moeTokenDispatcherType = "allgather"
    public var sequenceParallel = false
    public var useDistributedOptimizer = false
    public var overlapGradReduce = false
    public var overlapParamGather = false
    /// Average gradients inside the data-parallel collective (NCCL's avg) instead of scaling them by 1/dp first.
    public var ddpAverageInCollective = false
    /// Elements per DDP bucket; Megatron's default (max(40M, 1M x data-parallel size)) when nil.
    public var ddpBucketSize: Int?
    /// Minutes joining the job, or any collective, may wait before the job is failed (`--distributed-timeout-minutes`;
    /// fractions allowed here).
    public var distributedTimeoutMinutes: Float = 10
    /// Seconds a collective may wait once the job has started (`--distributed-timeout-seconds-after-init`); the
    /// joining timeout when nil.
    public var distributedTimeoutSecondsAfterInit: Int?
    /// `--tp-comm-overlap`: Megatron's userbuffers TP communication / GEMM overlap (not overlapped here).
    public var tpCommOverlap = false
    /// `--tp-comm-overlap-cfg`: the userbuffers YAML of `--tp-comm-overlap`.
    public var tpCommOverlapCfg: String?

    // Logging.
    public var logInterval = 100
    public var logThroughput = false
    public var tensorboardDir: String?
    public var logParamsNorm = false
    public var logNumZerosInGrad = false
    /// `progress.txt` in the `--save` directory.
    public var logProgress = false
    /// Megatron's timer detail (`--timing-log-level`): 0 the iteration time only, 1 also once-per-iteration
    /// phases, 2 also per-micro-batch phases.
    public var timingLogLevel = 0
    /// What the timer report shows across ranks.
    public var timingLogOption: TimingLogOption = .minmax
    public var barrierWithL1Time = true
    public var tensorboardLogInterval = 1
    public var tensorboardQueueSize = 1000
    public var logTimersToTensorboard = false
    public var logLossScaleToTensorboard = true
    public var logValidationPplToTensorboard = false
    public var logMemoryToTensorboard = false
    public var logWorldSizeToTensorboard = false
    /// Print the memory report every this many iterations (a multiple of `--log-interval`).
    public var logMemoryInterval: Int?
    public var logDeviceMemoryUsed = false
    /// Python's logging level: above INFO (20), Megatron's timer reports (logged at INFO) are not printed.
    public var loggingLevel: Int?

    // Checkpoints.
    public var save: String?
    public var load: String?
    public var saveInterval: Int?
    public var noLoadOptim = false
    public var noLoadRNG = false
    public var finetune = false
    /// `--ckpt-format`: how `--save` writes (loading reads whichever format it finds).
    public var ckptFormat: CheckpointFormat = .torchDist
    /// `--async-save`: each save copies the state and a background thread writes it while training goes on.
    public var asyncSave = false
    /// Ours, not Megatron's: delete all but the newest K checkpoints after each save.
    public var keepLastCheckpoints: Int?
    /// Keep only the checkpoints of iterations that are multiples of this (and the newest): each save deletes
    /// the one before it otherwise.
    public var saveRetainInterval: Int?

    // Data and tokenizer.
    public var mockData = false
    public var dataPath: [String]?
    public var trainDataPath: [String]?
    public var validDataPath: [String]?
    public var testDataPath: [String]?
    public var split: String?
    public var dataCachePath: String?
    public var eodMaskLoss = false
    public var tokenizerType: TokenizerOptions.Kind?
    public var vocabFile: String?
    public var mergeFile: String?
    public var tokenizerModel: String?
    public var vocabSize: Int?
    /// The model's vocabulary (embedding rows) as given, instead of the tokenizer's padded to
    /// `--make-vocab-size-divisible-by` x TP.
    public var paddedVocabSize: Int?
    public var tiktokenPattern: String?
    public var tiktokenNumSpecialTokens = 1000
    public var device: DeviceKind?

    public init() {}

    /// Whether the run uses the built-in synthetic corpus: no data files, no `--mock-data`, no tokenizer.
    public var usesEmbeddedCorpus: Bool {
        !mockData && dataPath == nil && trainDataPath == nil && validDataPath == nil && testDataPath == nil
            && tokenizerType == nil
    }

    /// The embedded default run: a small GPT for about a minute on the synthetic corpus.
    public static var embeddedDefault: PretrainArguments {
        var a = PretrainArguments()
        a.trainIters = 200
        a.lr = 1e-3
        a.minLR = 1e-4
        a.lrDecayStyle = .cosine
        a.lrWarmupIters = 20
        a.hiddenDropout = 0
        a.attentionDropout = 0
        a.logInterval = 25
        a.evalInterval = 100
        a.evalIters = 10
        return a
    }
}
