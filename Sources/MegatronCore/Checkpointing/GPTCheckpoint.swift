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
    /// Metadata describing `model`; pretraining checkpoints carry it too.
    public static func description(of model: GPTModel, vocabSize: Int) throws -> [String: Any] {
        [
            "model_config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(model.config)),
            "vocab_size": vocabSize,
            "padded_vocab_size": model.vocabSize,
            "max_position_embeddings": model.maxSequenceLength,
            "untie_embeddings_and_output_weights": model.outputLayer != nil,
        ]
    }

    /// Saves the model's parameters as `model.<name>` tensors, with `extraMetadata` (the recorded tokenizer,
    /// the Hugging Face architecture it came from) beside its description.
    public static func save(_ model: GPTModel, vocabSize: Int, to store: CheckpointDirectory, iteration: Int = 0,
                            release: Bool = false, extraMetadata: [String: Any] = [:]) throws {
        try model.requireWhole(for: "GPTCheckpoint.save")
        var tensors: [String: Tensor] = [:]
        for (name, p) in model.namedParameters() { tensors["model." + name] = p }
        let metadata = try description(of: model, vocabSize: vocabSize).merging(extraMetadata) { own, _ in own }
        try store.save(iteration: iteration, tensors: tensors, metadata: metadata, release: release)
    }

    /// The metadata key naming the Hugging Face architecture (`model_type`) a converted checkpoint came from,
    /// so that exporting it again writes the same one.
    public static let huggingFaceArchitectureKey = "huggingface_architecture"

    /// A checkpoint's model with its unpadded vocabulary size and the checkpoint's metadata.
    public struct Loaded {
        public let model: GPTModel
        public let vocabSize: Int
        public let metadata: [String: Any]
    }

    /// Loads the `model.<name>` tensors of a checkpoint into `model`; errors name `source` and the key.
    public static func loadWeights(_ tensors: [String: Tensor], into model: GPTModel, source: String) throws {
        var state: [String: Tensor] = [:]
        for (key, t) in tensors where key.hasPrefix("model.") { state[String(key.dropFirst(6))] = t }
        do {
            try model.loadStateDict(state)
        } catch let error as StateDictError {
            throw CheckpointError("\(source): \(error.description)")
        }
    }

    /// Rebuilds the model the latest checkpoint in `store` describes on `device` and loads its weights.
    public static func load(from store: CheckpointDirectory, device: Device = .cpu) throws -> Loaded {
        guard let (_, tensors, metadata) = try store.loadLatest() else {
            throw CheckpointError("\(store.root.path): no checkpoint (no latest_checkpointed_iteration.txt)")
        }
        guard let configObject = metadata["model_config"],
              let config = try? JSONDecoder().decode(TransformerConfig.self, from: JSONSerialization.data(withJSONObject: configObject)),
              let vocab = metadata["vocab_size"] as? Int, let padded = metadata["padded_vocab_size"] as? Int,
              let positions = metadata["max_position_embeddings"] as? Int
        else { throw CheckpointError("\(store.root.path): metadata lacks the model description (model_config, vocab sizes)") }
        guard vocab > 0 && vocab <= padded else {
            throw CheckpointError("\(store.root.path): metadata's vocab_size \(vocab) does not lie in 1...padded_vocab_size (\(padded))")
        }
        do {
            try config.validate()
        } catch let error as ConfigError {
            throw CheckpointError("\(store.root.path): model_config is invalid: \(error.description)")
        }
        let model = onDevice(device) {
            GPTModel(config: config, vocabSize: padded, maxSequenceLength: positions,
                     untieEmbeddingsAndOutputWeights: metadata["untie_embeddings_and_output_weights"] as? Bool ?? false)
        }
        try loadWeights(tensors, into: model, source: store.root.path)
        return Loaded(model: model, vocabSize: vocab, metadata: metadata)
    }
}
