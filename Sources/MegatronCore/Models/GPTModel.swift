import MegatronAutograd
import MegatronTensor

/// A GPT language model as Megatron Core builds it: embeddings, a pre-norm decoder, and an output layer
/// tied to the word embeddings unless `untieEmbeddingsAndOutputWeights`.
///
/// Built for a tensor-parallel group, each rank holds its slice of the vocabulary, of the attention heads
/// and of the MLP (see `TensorParallelGroup`); weights are drawn whole from the seed and sliced, so a seed
/// gives the same model for every group size.
///
/// ```swift
/// let config = try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4)
/// let model = GPTModel(config: config, vocabSize: 256, maxSequenceLength: 128, seed: 1234)
/// let losses = model.loss(tokens: tokens, labels: labels)   // [batch, seq]
/// ```
public final class GPTModel: Module {
    public let config: TransformerConfig
    /// The padded vocabulary of the whole model (every rank's slices together).
    public let vocabSize: Int
    public let maxSequenceLength: Int
    public let tensorParallel: TensorParallelGroup
    /// Which part of the model this is: the whole model, or one pipeline stage's.
    public let stage: GPTModelStage
    /// Whether the output layer has its own weight rather than the word embeddings'.
    public let untieEmbeddingsAndOutputWeights: Bool
    /// The word embeddings: on the first pipeline stage, and a copy on the last one when the output layer is
    /// tied to them; nil on other stages.
    public let wordEmbeddings: VocabParallelEmbedding?
    public let positionEmbeddings: Embedding?
    public let decoder: TransformerBlock
    /// What each decoder layer is built from (`TransformerBlockSpec.gpt(config)` unless given).
    public let decoderSpec: TransformerBlockSpec
    public let outputLayer: ColumnParallelLinear?
    let embeddingDropout: Dropout
    /// The dropout generators of this rank; their offsets are part of the training state.
    public let dropoutRNG: ModelParallelRNG
    /// The generator of dropout on activations every rank holds whole (all dropout on a single rank).
    public var dropoutGenerator: PhiloxGenerator { dropoutRNG.duplicated }

    /// `vocabSize` is the padded vocabulary (Megatron pads to a multiple of 128 x TP).
    public convenience init(config: TransformerConfig, vocabSize: Int, maxSequenceLength: Int,
                            untieEmbeddingsAndOutputWeights: Bool = false, seed: UInt64 = 1234) {
        // A single rank splits nothing, so no layout can be invalid.
        try! self.init(config: config, vocabSize: vocabSize, maxSequenceLength: maxSequenceLength,
                       untieEmbeddingsAndOutputWeights: untieEmbeddingsAndOutputWeights, seed: seed,
                       tensorParallel: .single)
    }

    /// This rank's part of the model for `tensorParallel`; throws when heads, query groups, the MLP width or
    /// the padded vocabulary do not divide by the group size. `decoderSpec` (one layer spec per
    /// `config.numLayers`) replaces the layers the config describes, e.g. with another attention or MLP.
    /// `stage` builds one pipeline stage's part only (see `GPTModelStage`), its weights equal to the whole model's.
    public init(config: TransformerConfig, vocabSize: Int, maxSequenceLength: Int,
                untieEmbeddingsAndOutputWeights: Bool = false, seed: UInt64 = 1234,
                tensorParallel: TensorParallelGroup, decoderSpec: TransformerBlockSpec? = nil,
                stage: GPTModelStage? = nil) throws {
        try tensorParallel.validate(config, vocabSize: vocabSize)
        let decoderSpec = decoderSpec ?? .gpt(config)
        guard decoderSpec.layers.count == config.numLayers else {
            throw ConfigError("the decoder spec lists \(decoderSpec.layers.count) layers but num_layers is \(config.numLayers)")
        }
        let stage = stage ?? .whole(layers: config.numLayers)
        guard stage.chunks.allSatisfy({ $0.upperBound <= config.numLayers }) else {
            throw ConfigError("pipeline stage layers \(stage.chunks) exceed num_layers \(config.numLayers)")
        }
        self.stage = stage
        self.untieEmbeddingsAndOutputWeights = untieEmbeddingsAndOutputWeights
        self.decoderSpec = decoderSpec
        self.config = config
        self.vocabSize = vocabSize
        self.maxSequenceLength = maxSequenceLength
        self.tensorParallel = tensorParallel
        let initRNG = PhiloxGenerator(seed: seed)
        dropoutRNG = ModelParallelRNG(seed: seed &+ 1, group: tensorParallel)
        // Every stage draws the weights in the whole model's order, keeping its own: the same seed gives the
        // same model for every pipeline split (a tied last stage's embedding copy starts equal to the first's).
        let words = VocabParallelEmbedding(count: vocabSize, dimension: config.hiddenSize,
                                           initMethod: config.embeddingInitMethod, dtype: config.paramsDType,
                                           group: tensorParallel, generator: initRNG)
        wordEmbeddings = stage.preProcess || (stage.postProcess && !untieEmbeddingsAndOutputWeights) ? words : nil
        let positions = config.positionEmbeddingType == .learnedAbsolute
            ? Embedding(count: maxSequenceLength, dimension: config.hiddenSize, initMethod: config.embeddingInitMethod,
                        dtype: config.paramsDType, generator: initRNG)
            : nil
        positionEmbeddings = stage.preProcess ? positions : nil
        decoder = TransformerBlock(config: config, generator: initRNG, dropout: dropoutRNG, tensorParallel: tensorParallel,
                                   spec: decoderSpec, keeping: stage.layers, finalNorm: stage.postProcess)
        outputLayer = untieEmbeddingsAndOutputWeights && stage.postProcess
            ? ColumnParallelLinear(inFeatures: config.hiddenSize, outFeatures: vocabSize, bias: false,
                                   initMethod: config.initMethod, dtype: config.paramsDType,
                                   group: tensorParallel, generator: initRNG)
            : nil
        embeddingDropout = Dropout(config.hiddenDropout,
                                   generator: dropoutRNG.generator(split: tensorParallel.sequenceParallel))
        super.init()
        wordEmbeddings?.setAttributes(ofParameter: "weight") { $0.shared = !untieEmbeddingsAndOutputWeights }
    }

    override public var children: [(String, Module)] {
        var embedding: [(String, Module)] = []
        if let wordEmbeddings { embedding.append(("embedding.word_embeddings", wordEmbeddings)) }
        if stage.preProcess { embedding.append(("embedding.embedding_dropout", embeddingDropout)) }
        if let positionEmbeddings { embedding.append(("embedding.position_embeddings", positionEmbeddings)) }
        return embedding + [("decoder", decoder)] + (outputLayer.map { [("output_layer", $0)] } ?? [])
    }

    /// The parameters Megatron marks `is_embedding_or_output_parameter`, which `--decoupled-lr` applies to: the
    /// word embeddings and the untied output layer's weight (not the position embeddings).
    public var embeddingOrOutputParameterNames: Set<String> {
        Set((wordEmbeddings == nil ? [] : ["embedding.word_embeddings.weight"]) + (outputLayer == nil ? [] : ["output_layer.weight"]))
    }

    /// The modules whose forwards run one after another, in that order: the embeddings, each decoder layer,
    /// the final norm and the output layer. Between them they hold every parameter, so
    /// `DistributedDataParallel` can wait for each one's parameters in a pre-forward hook on it.
    public var forwardStages: [Module] {
        let embeddings: [Module] = stage.preProcess ? [wordEmbeddings!] + (positionEmbeddings.map { [$0] } ?? []) : []
        let head: [Module] = (decoder.finalLayernorm.map { [$0] } ?? []) + (outputLayer.map { [$0] } ?? [])
        // A tied last stage's embedding copy is read by the output projection, after the final norm.
        let tiedCopy: [Module] = !stage.preProcess && outputLayer == nil ? (wordEmbeddings.map { [$0] } ?? []) : []
        return embeddings + decoder.layers + head + tiedCopy
    }

    /// Logits `[batch, seq, vocab]` for integer `tokens [batch, seq]`. With a `cache` (inference), `tokens`
    /// continue the cached sequence and the cache grows by them. Under tensor parallelism every rank gets all
    /// logits (gathered); `localLogits` skips the gather.
    public func callAsFunction(_ tokens: Tensor, cache: KVCache? = nil) -> Tensor {
        TensorParallelMappings.gatherFromRegion(localLogits(tokens, cache: cache), tensorParallel)
    }

    /// This rank's slice of the logits `[batch, seq, vocab / size]`.
    public func localLogits(_ tokens: Tensor, cache: KVCache? = nil) -> Tensor {
        runForward { logits(tokens, cache: cache) }
    }

    private func logits(_ tokens: Tensor, cache: KVCache?) -> Tensor {
        let seq = tokens.size(1), offset = cache?.length ?? 0
        let lastPosition = cache?.padding?.lastPosition(from: offset, count: seq) ?? offset + seq - 1
        precondition(lastPosition < maxSequenceLength || positionEmbeddings == nil,
                     "sequence length \(lastPosition + 1) exceeds max_position_embeddings \(maxSequenceLength)")
        return outputLogits(decoder(embed(tokens, offset: offset, cache: cache), cache: cache))
    }

    /// This rank's logit slice of the final hidden states: the output layer, or the tied word embeddings.
    func outputLogits(_ h: Tensor) -> Tensor {
        outputLayer.map { $0(h) } ?? ColumnParallelLinear.forward(h, weight: wordEmbeddings!.weight, group: tensorParallel)
    }

    /// Word plus position embeddings after dropout; under sequence parallelism only this rank's positions.
    func embed(_ tokens: Tensor, offset: Int, cache: KVCache?) -> Tensor {
        let sequenceParallel = tensorParallel.sequenceParallel
        if sequenceParallel {
            precondition(cache == nil, "sequence parallelism is for training; build the inference model without it")
            precondition(tokens.size(1) % tensorParallel.size == 0,
                         "sequence length \(tokens.size(1)) must be divisible by the tensor-parallel size \(tensorParallel.size) under sequence parallelism")
        }
        var h: Tensor
        if let positionEmbeddings {
            let seq = tokens.size(1)
            // Left-padded rows (batched prompts) count positions from their own first token.
            let positions = cache?.padding.map {
                Tensor(shape: [tokens.size(0), seq], ints: $0.positions(from: offset, count: seq).flatMap { $0 })
                    .to(tokens.device)
            } ?? Tensor.arange(offset, offset + seq, device: tokens.device)
            h = wordEmbeddings!(tokens) + positionEmbeddings(positions)
            if sequenceParallel { h = TensorParallelMappings.scatterToSequenceParallelRegion(h, tensorParallel) }
        } else {
            // Without position embeddings the vocabulary sum can land straight on the sequence shards.
            h = wordEmbeddings!(tokens, reduceScatter: sequenceParallel)
        }
        return embeddingDropout(h)
    }

    /// Cross-entropy per token `[batch, seq]` of predicting `labels` from `tokens`; under tensor parallelism
    /// computed from the vocabulary slices without gathering the logits.
    public func loss(tokens: Tensor, labels: Tensor) -> Tensor {
        guard tensorParallel.size > 1 else { return Functional.crossEntropy(self(tokens), labels: labels, consumingLogits: true) }
        return VocabParallelCrossEntropy.loss(localLogits(tokens), labels: labels, group: tensorParallel)
    }
}
