import Foundation
import MegatronTensor

/// A GPT model's weights in a checkpoint directory, with the description needed to rebuild it
/// (`model_config`, vocabulary and position sizes) in the metadata.
///
/// ```swift
/// try GPTCheckpoint.save(model, vocabSize: 50257, to: CheckpointDirectory(root: dir), release: true)
/// let loaded = try GPTCheckpoint.load(from: CheckpointDirectory(root: dir), device: .cuda(0))
/// print(loaded.vocabSize, loaded.model.config.numLayers)
/// ```
public enum GPTCheckpoint {
    /// The fields of `model_config` that decide the parameters' shapes (the ones a resume must match). Read apart
    /// from the whole `TransformerConfig`, so checkpoints written before a field was added to it still compare.
    public struct ModelShape: Decodable, Equatable {
        public var numLayers: Int
        public var hiddenSize: Int
        public var numAttentionHeads: Int
        public var numQueryGroups: Int
        public var kvChannels: Int
        public var ffnHiddenSize: Int
        public var normalization: TransformerConfig.Normalization
        public var gatedLinearUnit: Bool
        public var addBiasLinear: Bool
        public var addQKVBias: Bool
        public var qkLayernorm: Bool
        public var positionEmbeddingType: TransformerConfig.PositionEmbedding
        /// Absent from checkpoints written before these features: off.
        var attentionOutputGate: Bool?
        var gatedDeltaNet: GatedDeltaNetConfig?
        var moe: MoEConfig?

        public init(_ c: TransformerConfig) {
            (numLayers, hiddenSize, numAttentionHeads, numQueryGroups) = (c.numLayers, c.hiddenSize, c.numAttentionHeads, c.numQueryGroups)
            (kvChannels, ffnHiddenSize, normalization, gatedLinearUnit) = (c.kvChannels, c.ffnHiddenSize, c.normalization, c.gatedLinearUnit)
            (addBiasLinear, addQKVBias, qkLayernorm, positionEmbeddingType) = (c.addBiasLinear, c.addQKVBias, c.qkLayernorm, c.positionEmbeddingType)
            (attentionOutputGate, gatedDeltaNet, moe) = (c.attentionOutputGate, c.gatedDeltaNet, c.moe)
        }

        public var hasAttentionOutputGate: Bool { attentionOutputGate ?? false }

        /// The Gated DeltaNet layers and sizes in words ("none" without them), for comparing flags with a checkpoint.
        public var gatedDeltaNetLayout: String {
            guard let g = gatedDeltaNet else { return "none" }
            return "layers \(g.layers.map { $0 ? "1" : "0" }.joined()), key heads \(g.numKeyHeads)x\(g.keyHeadDim), "
                + "value heads \(g.numValueHeads)x\(g.valueHeadDim), conv \(g.convKernelDim)"
        }

        /// The mixture-of-experts layers and sizes in words ("none" without them), for comparing flags with a checkpoint.
        public var moeLayout: String {
            guard let m = moe else { return "none" }
            var words = "layers \(m.layers.map { $0 ? "1" : "0" }.joined()), \(m.numExperts) experts of \(m.ffnHiddenSize)"
            if let shared = m.sharedExpertIntermediateSize {
                words += ", shared expert of \(shared)"
                if m.sharedExpertGate == true { words += " with a sigmoid gate (--moe-shared-expert-gate)" }
            }
            return words
        }

        /// Layer 0's input projection: `in_proj` of a Gated DeltaNet layer, else `linear_qkv`, and its rows.
        var firstMixerProjection: (name: String, rows: Double) {
            if let g = gatedDeltaNet, g.layers.first == true {
                return ("self_attention.in_proj.weight", Double(2 * g.keyDim + 2 * g.valueDim + 2 * g.numValueHeads))
            }
            let queryAndGate = Double(numAttentionHeads) * (hasAttentionOutputGate ? 2 : 1)
            return ("self_attention.linear_qkv.weight", (queryAndGate + 2 * Double(numQueryGroups)) * Double(kvChannels))
        }

        /// Layer 0's MLP input projection (its first expert's when it is a mixture of experts) and its rows.
        var firstMLPProjection: (name: String, rows: Double) {
            let units: Double = gatedLinearUnit ? 2 : 1
            if let moe, moe.layers.first == true {
                return ("mlp.experts.local_experts.0.linear_fc1.weight", units * Double(moe.ffnHiddenSize))
            }
            return ("mlp.linear_fc1.weight", units * Double(ffnHiddenSize))
        }
    }

    /// The model a checkpoint holds, as its metadata describes it.
    public struct ModelDescription: Decodable {
        public var shape: ModelShape
        /// The tokenizer's vocabulary, before padding.
        public var vocabSize: Int
        /// Rows of the embedding as saved (padded).
        public var paddedVocabSize: Int
        public var maxPositionEmbeddings: Int
        public var untieEmbeddingsAndOutputWeights: Bool

        enum CodingKeys: String, CodingKey {
            case shape = "model_config", vocabSize = "vocab_size", paddedVocabSize = "padded_vocab_size"
            case maxPositionEmbeddings = "max_position_embeddings"
            case untieEmbeddingsAndOutputWeights = "untie_embeddings_and_output_weights"
        }

        /// The description in `checkpoint`'s metadata; missing or impossible values are errors naming the field.
        public init(of checkpoint: LoadedCheckpoint) throws {
            let metadata = checkpoint.metadata
            self = try metadata.decode(Self.self)
            // Sizes first: they bound every value by the shard's real tensors before anything computes with them.
            try requireSizes(of: checkpoint)
            guard vocabSize > 0, paddedVocabSize >= vocabSize else {
                throw metadata.invalid("vocab_size", "is \(vocabSize) with padded_vocab_size \(paddedVocabSize)")
            }
            guard maxPositionEmbeddings > 0 else { throw metadata.invalid("max_position_embeddings", "is \(maxPositionEmbeddings)") }
        }

        /// The sizes that decide how much a rebuilt model allocates agree with the shard's tensors, so a description
        /// that does not fit its weights is refused before anything is allocated. (In floating point: a corrupt size
        /// must not overflow.)
        func requireSizes(of checkpoint: LoadedCheckpoint) throws {
            let c = shape
            let hidden = Double(c.hiddenSize)
            var expected: [(String, [Double])] = [
                ("embedding.word_embeddings.weight", [Double(paddedVocabSize), hidden]),
                ("decoder.layers.0." + c.firstMixerProjection.name, [c.firstMixerProjection.rows, hidden]),
                ("decoder.layers.0." + c.firstMLPProjection.name, [c.firstMLPProjection.rows, hidden]),
            ]
            if c.positionEmbeddingType == .learnedAbsolute {
                expected.append(("embedding.position_embeddings.weight", [Double(maxPositionEmbeddings), hidden]))
            }
            for (name, shape) in expected {
                let found = checkpoint.shapes["model." + name]
                guard found?.map(Double.init) == shape else {
                    throw checkpoint.metadata.invalid("model_config", "describes model.\(name) as \(shape.map { Int(exactly: $0) ?? -1 }), "
                        + "but the shard holds " + (found.map { "\($0)" } ?? "no such tensor"))
                }
            }
            let layers = Set(checkpoint.shapes.keys.compactMap { key -> Int? in
                guard key.hasPrefix("model.decoder.layers.") else { return nil }
                return Int(key.dropFirst("model.decoder.layers.".count).prefix { $0 != "." })
            })
            guard layers.count == c.numLayers, layers.allSatisfy({ (0..<c.numLayers).contains($0) }) else {
                throw checkpoint.metadata.invalid("model_config", "describes \(c.numLayers) layers, but the shard holds \(layers.count)")
            }
        }
    }

    /// Records in `manifest` what rebuilds `model`; pretraining checkpoints carry it too.
    public static func describe(_ model: GPTModel, vocabSize: Int, in manifest: inout CheckpointManifest) {
        manifest.modelConfig = model.config
        manifest.vocabSize = vocabSize
        manifest.paddedVocabSize = model.vocabSize
        manifest.maxPositionEmbeddings = model.maxSequenceLength
        // Not `outputLayer != nil`: a pipeline stage other than the last has no output layer either way.
        manifest.untieEmbeddingsAndOutputWeights = model.untieEmbeddingsAndOutputWeights
    }

    /// Saves the model's parameters as `model.<name>` tensors (or, with `torchDist`, as Megatron-LM's torch_dist
    /// checkpoint), with `manifest` (the recorded tokenizer, the Hugging Face architecture it came from) completed by
    /// the model's description, holding the directory's `SaveDirectoryLock` meanwhile.
    public static func save(_ model: GPTModel, vocabSize: Int, to store: CheckpointDirectory, iteration: Int = 0,
                            release: Bool = false, manifest: CheckpointManifest = CheckpointManifest(), torchDist: Bool = false) throws {
        try model.requireWhole(for: "GPTCheckpoint.save")
        let lock = try SaveDirectoryLock(directory: store.root)
        defer { lock.release() }
        try store.repairInterruptedSave()
        var state: [String: Tensor] = [:]
        for (name, t) in model.namedParameters() + model.checkpointBuffers() { state[name] = t }
        var tensors: [String: Tensor] = [:]
        for (name, t) in state { tensors["model." + name] = t }
        var manifest = manifest
        describe(model, vocabSize: vocabSize, in: &manifest)
        if torchDist {
            try MegatronCheckpointFormat.save(to: store, iteration: iteration, model: state, optimizer: [:], manifest: manifest, release: release)
        } else {
            try store.save(iteration: iteration, tensors: tensors, manifest: manifest, release: release)
        }
    }

    /// A checkpoint's model with its unpadded vocabulary size and the checkpoint's manifest.
    public struct Loaded {
        public let model: GPTModel
        public let vocabSize: Int
        public let manifest: CheckpointManifest
    }

    /// Loads the `model.<name>` tensors of a checkpoint into `model` (parameters, and buffers such as the expert
    /// bias); errors name `source` and the key.
    public static func loadWeights(_ tensors: [String: Tensor], into model: GPTModel, source: String) throws {
        var state: [String: Tensor] = [:]
        for (key, t) in tensors where key.hasPrefix("model.") { state[String(key.dropFirst(6))] = t }
        let (parameters, buffers) = GPTModel.splitBuffers(state)
        try model.loadCheckpointBuffers(buffers, source: source)
        do {
            try model.loadStateDict(parameters)
        } catch let error as StateDictError {
            throw CheckpointError("\(source): \(error.description)")
        }
    }

    /// Rebuilds the model the latest checkpoint in `store` describes on `device` and loads its weights.
    public static func load(from store: CheckpointDirectory, device: Device = .cpu) throws -> Loaded {
        guard let checkpoint = try store.loadLatest() else {
            throw CheckpointError("\(store.root.path): no checkpoint (no \(CheckpointDirectory.trackerName))")
        }
        return try model(of: checkpoint, device: device)
    }

    /// The model `checkpoint` describes, on `device`, with its weights.
    static func model(of checkpoint: LoadedCheckpoint, device: Device = .cpu) throws -> Loaded {
        let description = try ModelDescription(of: checkpoint)
        let manifest = try checkpoint.metadata.manifest()
        guard let config = manifest.modelConfig else { throw checkpoint.metadata.invalid("model_config", "is missing") }
        do {
            try config.validate()
        } catch let error as ConfigError {
            throw checkpoint.metadata.invalid("model_config", "is invalid: \(error.description)")
        }
        let model = onDevice(device) {
            GPTModel(config: config, vocabSize: description.paddedVocabSize,
                     maxSequenceLength: description.maxPositionEmbeddings,
                     untieEmbeddingsAndOutputWeights: description.untieEmbeddingsAndOutputWeights)
        }
        try loadWeights(checkpoint.tensors, into: model, source: checkpoint.directory.path)
        return Loaded(model: model, vocabSize: description.vocabSize, manifest: manifest)
    }
}
