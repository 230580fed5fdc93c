import Foundation

/// What a checkpoint's `metadata.json` records, as a type: `CheckpointDirectory.save` writes one, loaders read it
/// (or the part they need, through `CheckpointMetadata.decode`). Its JSON keys are the ones every checkpoint has
/// been written with; a field a kind of checkpoint does not carry is nil (a conversion has no training state, a
/// pretraining checkpoint no Hugging Face architecture).
///
/// ```swift
/// var manifest = CheckpointManifest()
/// manifest.consumedSamples = 800
/// try store.save(iteration: 100, tensors: state, manifest: manifest)
/// let read = try store.loadLatest()!.metadata.manifest()   // read.consumedSamples == 800
/// ```
public struct CheckpointManifest: Codable, Equatable {
    // Every checkpoint: set by `CheckpointDirectory.save`.
    public var iteration: Int?
    public var checkpointVersion: Double?
    /// Each shard's size and checksum, by file name.
    public var files: [String: CheckpointDirectory.Fingerprint]?

    // The model (`GPTCheckpoint.describe`).
    public var modelConfig: TransformerConfig?
    /// The tokenizer's vocabulary, before padding.
    public var vocabSize: Int?
    /// Rows of the embedding as saved (padded).
    public var paddedVocabSize: Int?
    public var maxPositionEmbeddings: Int?
    public var untieEmbeddingsAndOutputWeights: Bool?

    // What a conversion carries.
    /// The tokenizer copied into the checkpoint (`CheckpointTokenizer`).
    public var tokenizer: RecordedTokenizer?
    /// The Hugging Face architecture (`model_type`) a converted checkpoint came from.
    public var huggingfaceArchitecture: String?

    // Training state (pretrain-gpt).
    public var consumedSamples: Int?
    public var numFloatingPointOperationsSoFar: Double?
    public var optimizerSteps: Int?
    public var rng: DropoutRNG?
    /// The run's arguments, as the run encoded them (kept as JSON: a checkpoint outlives the flag set that wrote it).
    public var args: JSONValue?
    public var parallel: ParallelLayout?
    /// Each saved tensor's shape.
    public var shapes: [String: [Int]]?
    public var optParamScheduler: OptimizerParamScheduler.State?
    public var gradScaler: DynamicGradScaler.State?
    /// Delayed FP8 scaling's per-tensor states (amax history, scale) by `<linear layer path>.<input|weight|grad_output>`.
    public var fp8Scaling: [String: FP8ScalingState]?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case iteration, checkpointVersion = "checkpoint_version", files
        case modelConfig = "model_config", vocabSize = "vocab_size", paddedVocabSize = "padded_vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case untieEmbeddingsAndOutputWeights = "untie_embeddings_and_output_weights"
        case tokenizer, huggingfaceArchitecture = "huggingface_architecture"
        case consumedSamples = "consumed_samples", numFloatingPointOperationsSoFar = "num_floating_point_operations_so_far"
        case optimizerSteps = "optimizer_steps", rng, args, parallel, shapes
        case optParamScheduler = "opt_param_scheduler", gradScaler = "grad_scaler"
        case fp8Scaling = "fp8_scaling"
    }

    /// The tokenizer a conversion copied into the checkpoint: its type and its files, relative to the checkpoint's root.
    public struct RecordedTokenizer: Codable, Equatable {
        /// A `--tokenizer-type` name; kept as text so that a type this build does not know is reported by name.
        public var tokenizerType: String
        public var tokenizerModel: String?
        public var vocabFile: String?
        public var mergeFile: String?
        public var vocabSize: Int?

        public init(tokenizerType: String, tokenizerModel: String? = nil, vocabFile: String? = nil, mergeFile: String? = nil,
                    vocabSize: Int? = nil) {
            (self.tokenizerType, self.tokenizerModel, self.vocabFile, self.mergeFile) = (tokenizerType, tokenizerModel, vocabFile, mergeFile)
            self.vocabSize = vocabSize
        }

        enum CodingKeys: String, CodingKey {
            case tokenizerType = "tokenizer_type", tokenizerModel = "tokenizer_model", vocabFile = "vocab_file"
            case mergeFile = "merge_file", vocabSize = "vocab_size"
        }
    }

    /// Where the dropout generators stood. The tensor-parallel generator (split activations) advances as the shared
    /// one does on every rank, so one offset restores it on any rank.
    public struct DropoutRNG: Codable, Equatable {
        public var dropoutOffset: Int
        public var tensorParallelDropoutOffset: Int
        /// The seed the offsets belong to (a record: resuming keeps the run's `--seed`).
        public var dropoutSeed: Int?

        public init(dropoutOffset: Int, tensorParallelDropoutOffset: Int, dropoutSeed: Int? = nil) {
            (self.dropoutOffset, self.tensorParallelDropoutOffset, self.dropoutSeed) = (dropoutOffset, tensorParallelDropoutOffset, dropoutSeed)
        }

        enum CodingKeys: String, CodingKey {
            case dropoutOffset = "dropout_offset", tensorParallelDropoutOffset = "tensor_parallel_dropout_offset"
            case dropoutSeed = "dropout_seed"
        }
    }

    /// The parallel layout that wrote the checkpoint; the state is saved whole (`savedLayout` "whole", the single-rank
    /// layout) or as each rank's torch_dist boxes ("sharded").
    public struct ParallelLayout: Codable, Equatable {
        public var tensorModelParallelSize: Int
        public var pipelineModelParallelSize: Int
        public var dataParallelSize: Int
        public var savedLayout: String

        public init(tensorModelParallelSize: Int, pipelineModelParallelSize: Int, dataParallelSize: Int, savedLayout: String) {
            (self.tensorModelParallelSize, self.pipelineModelParallelSize) = (tensorModelParallelSize, pipelineModelParallelSize)
            (self.dataParallelSize, self.savedLayout) = (dataParallelSize, savedLayout)
        }

        enum CodingKeys: String, CodingKey {
            case tensorModelParallelSize = "tensor_model_parallel_size", pipelineModelParallelSize = "pipeline_model_parallel_size"
            case dataParallelSize = "data_parallel_size", savedLayout = "saved_layout"
        }
    }
}
