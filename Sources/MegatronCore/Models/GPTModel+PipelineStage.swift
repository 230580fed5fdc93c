import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// What a pipeline stage's forward of one micro-batch yields.
public enum PipelineStageOutput {
    /// The hidden states handed to the next stage.
    case activation(Tensor)
    /// The last stage's loss.
    case loss(MicroBatchLoss)
}

extension GPTModel {
    /// The forward of one micro-batch through model chunk `chunk` of this stage: the first chunk of the first
    /// stage embeds `batch.tokens`, any other starts from `input` (the previous stage's activation, of shape
    /// `stageActivationShape`); the last chunk of the last stage returns the masked loss of `batch.labels`,
    /// the others the activation to send on.
    ///
    /// ```swift
    /// let out = model.stageForward(batch, input: received, chunk: 1)   // .activation(h) or .loss(loss)
    /// ```
    public func stageForward(_ batch: TrainingBatch, input: Tensor?, chunk: Int = 0) -> PipelineStageOutput {
        runForward {
            let embeds = stage.embeds(inChunk: chunk), endsModel = stage.computesLoss(inChunk: chunk)
            precondition(embeds || input != nil, "a pipeline model chunk after the first needs its input activation")
            let hidden = decoder.forward(embeds ? embed(batch.tokens, offset: 0, cache: nil) : input!,
                                         positions: stage.positions(ofChunk: chunk), finalNorm: endsModel)
            guard endsModel else { return .activation(hidden) }
            let logits = outputLogits(hidden)
            let losses = tensorParallel.size > 1
                ? VocabParallelCrossEntropy.loss(logits, labels: batch.labels, group: tensorParallel)
                : Functional.crossEntropy(logits, labels: batch.labels, consumingLogits: true)
            return .loss(MicroBatchLoss(losses: losses, batch: batch))
        }
    }

    /// The shape of the activation between pipeline stages for micro-batches of `batch` sequences of `seq`
    /// tokens: `[batch, seq, hidden]`, the sequence split over the tensor-parallel ranks under sequence
    /// parallelism (both neighbours agree on it, so the receiver can allocate before the data arrives).
    public func stageActivationShape(batch: Int, seq: Int) -> [Int] {
        var shape = [batch, seq, config.hiddenSize]
        if tensorParallel.sequenceParallel { shape[TensorParallelMappings.sequenceDim] /= tensorParallel.size }
        return shape
    }

    /// Parameters this stage holds only as a copy of another stage's (the tied word embeddings on the last
    /// stage): they stay out of the gradient norm, as Megatron's `param_is_not_shared`.
    public var pipelineCopiedParameterNames: Set<String> {
        !stage.preProcess && wordEmbeddings != nil ? ["embedding.word_embeddings.weight"] : []
    }

    /// The word embeddings tied to an output layer on another pipeline stage (Megatron's `shared_embedding`):
    /// on the first stage and, as a copy, on the last; nil on a whole model, a middle stage or when untied.
    /// Their gradient is summed over the embedding group (`TrainingStep`), and with the distributed optimizer
    /// they get a gradient bucket of their own so both stages shard them alike.
    public var pipelineSharedEmbedding: (name: String, weight: Tensor)? {
        guard !untieEmbeddingsAndOutputWeights, !(stage.preProcess && stage.postProcess), let weight = wordEmbeddings?.weight else { return nil }
        return ("embedding.word_embeddings.weight", weight)
    }
}
