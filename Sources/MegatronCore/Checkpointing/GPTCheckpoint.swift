import Foundation
import MegatronTensor

/// A GPT model's weights in a checkpoint directory, with the description needed to rebuild it
/// (`model_config`, vocabulary and position sizes) in the metadata.
///
/// ```swift
/// try GPTCheckpoint.save(model, vocabSize: 50257, to: CheckpointDirectory(root: dir), release: true)
/// let (model, vocab) = try GPTCheckpoint.load(from: CheckpointDirectory(root: dir))
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

    /// Saves the model's parameters as `model.<name>` tensors.
    public static func save(_ model: GPTModel, vocabSize: Int, to store: CheckpointDirectory, iteration: Int = 0,
                            release: Bool = false) throws {
        try model.requireWhole(for: "GPTCheckpoint.save")
        var tensors: [String: Tensor] = [:]
        for (name, p) in model.namedParameters() { tensors["model." + name] = p }
        try store.save(iteration: iteration, tensors: tensors, metadata: try description(of: model, vocabSize: vocabSize),
                       release: release)
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

    /// Rebuilds the model the latest checkpoint in `store` describes and loads its weights.
    public static func load(from store: CheckpointDirectory) throws -> (model: GPTModel, vocabSize: Int) {
        guard let (_, tensors, metadata) = try store.loadLatest() else {
            throw CheckpointError("\(store.root.path): no checkpoint (no latest_checkpointed_iteration.txt)")
        }
        guard let configObject = metadata["model_config"],
              let config = try? JSONDecoder().decode(TransformerConfig.self, from: JSONSerialization.data(withJSONObject: configObject)),
              let vocab = metadata["vocab_size"] as? Int, let padded = metadata["padded_vocab_size"] as? Int,
              let positions = metadata["max_position_embeddings"] as? Int
        else { throw CheckpointError("\(store.root.path): metadata lacks the model description (model_config, vocab sizes)") }
        do {
            try config.validate()
        } catch let error as ConfigError {
            throw CheckpointError("\(store.root.path): model_config is invalid: \(error.description)")
        }
        let model = GPTModel(config: config, vocabSize: padded, maxSequenceLength: positions,
                             untieEmbeddingsAndOutputWeights: metadata["untie_embeddings_and_output_weights"] as? Bool ?? false)
        try loadWeights(tensors, into: model, source: store.root.path)
        return (model, vocab)
    }
}
