import MegatronAutograd
import MegatronTensor

/// A GPT language model as Megatron Core builds it: embeddings, a pre-norm decoder, and an output layer
/// tied to the word embeddings unless `untieEmbeddingsAndOutputWeights`.
///
/// ```swift
/// let config = try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4)
/// let model = GPTModel(config: config, vocabSize: 256, maxSequenceLength: 128, seed: 1234)
/// let losses = model.loss(tokens: tokens, labels: labels)   // [batch, seq]
/// ```
public final class GPTModel: Module {
    public let config: TransformerConfig
    public let vocabSize: Int
    public let maxSequenceLength: Int
    public let wordEmbeddings: Embedding
    public let positionEmbeddings: Embedding?
    public let decoder: TransformerBlock
    public let outputLayer: Linear?
    let embeddingDropout: Dropout
    /// The generator every dropout mask of this model draws from; its offset is part of the training state.
    public let dropoutGenerator: PhiloxGenerator

    /// `vocabSize` is the padded vocabulary (Megatron pads to a multiple of 128 x TP).
    public init(config: TransformerConfig, vocabSize: Int, maxSequenceLength: Int,
                untieEmbeddingsAndOutputWeights: Bool = false, seed: UInt64 = 1234) {
        self.config = config
        self.vocabSize = vocabSize
        self.maxSequenceLength = maxSequenceLength
        let initRNG = PhiloxGenerator(seed: seed)
        let dropoutRNG = PhiloxGenerator(seed: seed &+ 1)
        dropoutGenerator = dropoutRNG
        wordEmbeddings = Embedding(count: vocabSize, dimension: config.hiddenSize, initStd: config.initMethodStd,
                                   dtype: config.paramsDType, generator: initRNG)
        positionEmbeddings = config.positionEmbeddingType == .learnedAbsolute
            ? Embedding(count: maxSequenceLength, dimension: config.hiddenSize, initStd: config.initMethodStd,
                        dtype: config.paramsDType, generator: initRNG)
            : nil
        decoder = TransformerBlock(config: config, generator: initRNG, dropoutGenerator: dropoutRNG)
        outputLayer = untieEmbeddingsAndOutputWeights
            ? Linear(inFeatures: config.hiddenSize, outFeatures: vocabSize, bias: false,
                     initStd: config.initMethodStd, dtype: config.paramsDType, generator: initRNG)
            : nil
        embeddingDropout = Dropout(config.hiddenDropout, generator: dropoutRNG)
    }

    override public var children: [(String, Module)] {
        var embedding: [(String, Module)] = [("embedding.word_embeddings", wordEmbeddings),
                                             ("embedding.embedding_dropout", embeddingDropout)]
        if let positionEmbeddings { embedding.append(("embedding.position_embeddings", positionEmbeddings)) }
        return embedding + [("decoder", decoder)] + (outputLayer.map { [("output_layer", $0)] } ?? [])
    }

    /// Logits `[batch, seq, vocab]` for integer `tokens [batch, seq]`. With a `cache` (inference), `tokens`
    /// continue the cached sequence and the cache grows by them.
    public func callAsFunction(_ tokens: Tensor, cache: KVCache? = nil) -> Tensor {
        let seq = tokens.size(1), offset = cache?.length ?? 0
        let padding = cache?.padding
        let lastPosition = padding?.lastPosition(from: offset, count: seq) ?? offset + seq - 1
        precondition(lastPosition < maxSequenceLength || positionEmbeddings == nil,
                     "sequence length \(lastPosition + 1) exceeds max_position_embeddings \(maxSequenceLength)")
        var h = wordEmbeddings(tokens)
        if let positionEmbeddings {
            // Left-padded rows (batched prompts) count positions from their own first token.
            let positions = padding.map {
                Tensor(shape: [tokens.size(0), seq], ints: $0.positions(from: offset, count: seq).flatMap { $0 })
                    .to(tokens.device)
            } ?? Tensor.arange(offset, offset + seq, device: tokens.device)
            h = h + positionEmbeddings(positions)
        }
        h = decoder(embeddingDropout(h), cache: cache)
        return h.matmul((outputLayer?.weight ?? wordEmbeddings.weight).transpose(0, 1))
    }

    /// Cross-entropy per token `[batch, seq]` of predicting `labels` from `tokens`.
    public func loss(tokens: Tensor, labels: Tensor) -> Tensor {
        Functional.crossEntropy(self(tokens), labels: labels)
    }
}
