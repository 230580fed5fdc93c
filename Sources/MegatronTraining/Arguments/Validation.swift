import Foundation
import MegatronTensor
import MegatronCore
import MegatronCUDA

extension PretrainArguments {
    /// Checks the settings against each other as Megatron's `validate_args` does, before any work starts.
    public func validate(dataParallelSize: Int = 1) throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require(lr != nil, "--lr is required")
        try require(trainIters != nil || trainSamples != nil, "one of --train-iters or --train-samples is required")
        try require(trainIters == nil || trainSamples == nil, "--train-iters and --train-samples are mutually exclusive")
        try validateValues()
        let global = globalBatchSize ?? microBatchSize * dataParallelSize
        try require(global % (microBatchSize * dataParallelSize) == 0,
                    "--global-batch-size (\(global)) must be a multiple of --micro-batch-size (\(microBatchSize)) x data-parallel size (\(dataParallelSize))")
        try require(!(bf16 && fp16), "--bf16 and --fp16 cannot both be set")
        if positionEmbeddingType == .learnedAbsolute {
            try require(seqLength <= resolvedMaxPositionEmbeddings,
                        "--seq-length (\(seqLength)) exceeds --max-position-embeddings (\(resolvedMaxPositionEmbeddings))")
        }
        try require(lrWarmupFraction == nil || lrWarmupIters == 0, "--lr-warmup-fraction and --lr-warmup-iters are mutually exclusive")
        try require(save == nil || (saveInterval ?? 0) > 0, "--save-interval is required (and positive) when --save is given")
        try require(!asyncSave || ckptFormat == .torchDist, "--async-save writes --ckpt-format torch_dist only (as Megatron-LM)")
        try require(keepLastCheckpoints == nil || keepLastCheckpoints! > 0, "--keep-last-checkpoints must be positive")
        if let retain = saveRetainInterval, let every = saveInterval, save != nil {
            try require(retain > 0 && retain % every == 0,
                        "--save-retain-interval (\(retain)) must be a positive multiple of --save-interval (\(every))")
        }
        try validateParallelism()
        try validateModelShape()
        try validateSchedule(dataParallelSize: dataParallelSize)
        try validateModelFeatures(dataParallelSize: dataParallelSize)
        try validateLogging()
        try validateCommunicationOverlap()
        _ = try transformerConfig()
        _ = try fp8TrainingRecipe()
    }

    /// The parallel settings on their own (the world size is checked where the world is known).
    func validateParallelism() throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        for (flag, value) in [("--tensor-model-parallel-size", tensorModelParallelSize),
                              ("--pipeline-model-parallel-size", pipelineModelParallelSize),
                              ("--context-parallel-size", contextParallelSize),
                              ("--expert-model-parallel-size", expertModelParallelSize)] {
            try require(value >= 1, "\(flag) must be at least 1, got \(value)")
        }
        try require(distributedTimeoutMinutes > 0, "--distributed-timeout-minutes must be positive, got \(distributedTimeoutMinutes)")
        if let seconds = distributedTimeoutSecondsAfterInit {
            try require(seconds > 0, "--distributed-timeout-seconds-after-init must be positive, got \(seconds)")
        }
        _ = try pipelinePlacement()
        try validateWarmupFlush()
        try require(pipelineModelParallelSize == 1 || save == nil || ckptFormat != .safetensors,
                    "--ckpt-format safetensors with --pipeline-model-parallel-size \(pipelineModelParallelSize): that layout is one file "
                        + "of the whole model, which no rank holds under pipelining; save with --ckpt-format torch_dist (the default), "
                        + "which each stage writes its part of")
        try require(contextParallelSize == 1, "--context-parallel-size \(contextParallelSize): context parallelism is not implemented yet")
        try validateExpertParallelism()
        let tp = tensorModelParallelSize
        try require(numAttentionHeads % tp == 0,
                    "--num-attention-heads (\(numAttentionHeads)) must be divisible by --tensor-model-parallel-size (\(tp))")
        if groupQueryAttention {
            try require(numQueryGroups % tp == 0,
                        "--num-query-groups (\(numQueryGroups)) must be divisible by --tensor-model-parallel-size (\(tp))")
        }
        try require(!overlapParamGather || useDistributedOptimizer, "--overlap-param-gather needs --use-distributed-optimizer")
    }

    /// `--sequence-parallel` takes effect only with tensor parallelism (Megatron turns it off at TP 1).
    public var effectiveSequenceParallel: Bool { sequenceParallel && tensorModelParallelSize > 1 }

    public var resolvedMaxPositionEmbeddings: Int { maxPositionEmbeddings ?? seqLength }

    /// `--device cpu|cuda`; without it, the GPU `LOCAL_RANK` names (else 0) when one is usable, else the CPU.
    public func resolvedDevice() throws -> Device {
        let ordinal: Int
        do {
            ordinal = try CUDADevice.ordinal(index: nil, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ArgumentError("\(error)")
        }
        switch device {
        case .cpu: return .cpu
        case .cuda:
            do {
                try checkKernelChoices(CUDAContext.shared(ordinal: ordinal, environment: cudaEnvironment()))
            } catch let error as ArgumentError {
                throw error
            } catch {
                throw ArgumentError("--device cuda: \(error)")
            }
            return .cuda(ordinal)
        case nil:
            guard let context = try? CUDAContext.shared(ordinal: ordinal, environment: cudaEnvironment()) else { return .cpu }
            try checkKernelChoices(context)
            return .cuda(ordinal)
        }
    }

    /// The device a `--device` value (`cpu`, `cuda` or none) names, as `resolvedDevice()` picks it with no
    /// other flags.
    public static func resolveDevice(_ device: DeviceKind?) throws -> Device {
        var arguments = PretrainArguments()
        arguments.device = device
        return try arguments.resolvedDevice()
    }

    /// `--use-rope-scaling` as Megatron applies it: Llama 3 scaling by `--rope-scaling-factor`, on RoPE only.
    func ropeScaling() throws -> RopeScaling? {
        guard useRopeScaling else { return nil }
        guard positionEmbeddingType == .rope else {
            throw ArgumentError("--use-rope-scaling scales rotary embeddings: it needs --position-embedding-type rope, not \(positionEmbeddingType.rawValue)")
        }
        guard ropeScalingFactor > 0 else { throw ArgumentError("--rope-scaling-factor must be positive, got \(ropeScalingFactor)") }
        return .megatron(factor: ropeScalingFactor)
    }

    /// The model configuration these flags describe.
    public func transformerConfig() throws -> TransformerConfig {
        do {
            return try TransformerConfig(
                numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                numQueryGroups: groupQueryAttention ? numQueryGroups : nil, kvChannels: kvChannels,
                ffnHiddenSize: resolvedFFNHiddenSize, normalization: normalization,
                layernormEpsilon: normEpsilon, gatedLinearUnit: swiglu || quickGeglu, activation: mlpActivation,
                addBiasLinear: addBiasLinear, addQKVBias: addQKVBias || addBiasLinear, qkLayernorm: qkLayernorm,
                hiddenDropout: hiddenDropout, attentionDropout: attentionDropout,
                positionEmbeddingType: positionEmbeddingType.transformerConfig,
                rotaryBase: rotaryBase, rotaryPercent: rotaryPercent, initMethodStd: initMethodStd,
                paramsDType: bf16 ? .bfloat16 : (fp16 ? .float16 : .float32),
                ropeScaling: try ropeScaling(),
                layernormZeroCenteredGamma: applyLayernorm1p, embeddingInitMethodStd: embeddingInitMethodStd,
                initMethodXavierUniform: initMethodXavierUniform, attentionOutputGate: attentionOutputGate,
                gatedDeltaNet: try gatedDeltaNetConfig(),
                gluLinearOffset: gluLinearOffset, activationFuncClampValue: activationFuncClampValue,
                softmaxType: softmaxType, slidingWindow: try slidingWindow(), windowAttnSkipFreq: try windowAttnPattern(),
                yarn: yarnScaling(), moe: try moeConfig())
        } catch let error as ConfigError {
            throw ArgumentError(error.description)
        }
    }
}
