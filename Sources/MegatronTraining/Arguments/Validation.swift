import Foundation
import MegatronTensor
import MegatronCore

extension PretrainArguments {
    /// Number of micro-batches per iteration on one data-parallel rank.
    public func microBatchesPerIteration(dataParallelSize: Int = 1) -> Int {
        (globalBatchSize ?? microBatchSize * dataParallelSize) / (microBatchSize * dataParallelSize)
    }

    /// Checks the settings against each other as Megatron's `validate_args` does, before any work starts.
    public func validate(dataParallelSize: Int = 1) throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require(lr != nil, "--lr is required")
        try require(trainIters != nil || trainSamples != nil, "one of --train-iters or --train-samples is required")
        try require(trainIters == nil || trainSamples == nil, "--train-iters and --train-samples are mutually exclusive")
        try require(microBatchSize > 0, "--micro-batch-size must be positive")
        let global = globalBatchSize ?? microBatchSize * dataParallelSize
        try require(global % (microBatchSize * dataParallelSize) == 0,
                    "--global-batch-size (\(global)) must be a multiple of --micro-batch-size (\(microBatchSize)) x data-parallel size (\(dataParallelSize))")
        try require(!(bf16 && fp16), "--bf16 and --fp16 cannot both be set")
        try require(seqLength > 0, "--seq-length must be positive")
        if positionEmbeddingType == "learned_absolute" {
            try require(seqLength <= resolvedMaxPositionEmbeddings,
                        "--seq-length (\(seqLength)) exceeds --max-position-embeddings (\(resolvedMaxPositionEmbeddings))")
        }
        try require(recomputeMethod == nil || recomputeGranularity == "full",
                    "--recompute-method needs --recompute-granularity full")
        try require(recomputeGranularity != "full" || (recomputeMethod != nil && recomputeNumLayers != nil),
                    "--recompute-granularity full needs --recompute-method and --recompute-num-layers")
        try require(lrWarmupFraction == nil || lrWarmupIters == 0, "--lr-warmup-fraction and --lr-warmup-iters are mutually exclusive")
        try require(save == nil || (saveInterval ?? 0) > 0, "--save-interval is required (and positive) when --save is given")
        try require(keepLastCheckpoints == nil || keepLastCheckpoints! > 0, "--keep-last-checkpoints must be positive")
        _ = try transformerConfig()
    }

    public var resolvedMaxPositionEmbeddings: Int { maxPositionEmbeddings ?? seqLength }

    /// `--device cpu|cuda`; without it, the GPU `LOCAL_RANK` names (else 0) when one is usable, else the CPU.
    public func resolvedDevice() throws -> Device {
        let ordinal = ProcessInfo.processInfo.environment["LOCAL_RANK"].flatMap(Int.init) ?? 0
        switch device {
        case "cpu": return .cpu
        case "cuda":
            do {
                _ = try CUDAContext.shared(ordinal: ordinal)
            } catch {
                throw ArgumentError("--device cuda: \(error)")
            }
            return .cuda(ordinal)
        default:
            return (try? CUDAContext.shared(ordinal: ordinal)) != nil ? .cuda(ordinal) : .cpu
        }
    }

    /// The model configuration these flags describe.
    public func transformerConfig() throws -> TransformerConfig {
        let ffn = ffnHiddenSize ?? (swiglu ? Int(Float(8 * hiddenSize) / 3 / 64) * 64 : 4 * hiddenSize)
        do {
            return try TransformerConfig(
                numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                numQueryGroups: groupQueryAttention ? numQueryGroups : nil, kvChannels: kvChannels,
                ffnHiddenSize: ffn, normalization: normalization == "RMSNorm" ? .rmsNorm : .layerNorm,
                layernormEpsilon: normEpsilon, gatedLinearUnit: swiglu, activation: swiglu ? .silu : .gelu,
                addBiasLinear: addBiasLinear, addQKVBias: addQKVBias || addBiasLinear, qkLayernorm: qkLayernorm,
                hiddenDropout: hiddenDropout, attentionDropout: attentionDropout,
                positionEmbeddingType: TransformerConfig.PositionEmbedding(rawValue: positionEmbeddingType) ?? .none,
                rotaryBase: rotaryBase, rotaryPercent: rotaryPercent, initMethodStd: initMethodStd,
                paramsDType: bf16 ? .bfloat16 : (fp16 ? .float16 : .float32))
        } catch let error as ConfigError {
            throw ArgumentError(error.description)
        }
    }
}
