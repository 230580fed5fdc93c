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
    /// This stage's forward of one micro-batch: the first stage embeds `batch.tokens`, a later one starts from
    /// `input` (the previous stage's activation, of shape `stageActivationShape`); the last stage returns the
    /// masked loss of `batch.labels`, the others the activation to send on.
    ///
    /// ```swift
    /// let out = model.stageForward(batch, input: received)   // .activation(h) or .loss(loss)
    /// ```
    public func stageForward(_ batch: TrainingBatch, input: Tensor?) -> PipelineStageOutput {
        runForward {
            precondition(stage.preProcess || input != nil, "a pipeline stage after the first needs its input activation")
            let hidden = decoder(stage.preProcess ? embed(batch.tokens, offset: 0, cache: nil) : input!)
            guard stage.postProcess else { return .activation(hidden) }
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

    /// Sums the tied word embeddings' gradient over `embeddingGroup` (the first and last pipeline stages),
    /// so both copies take the same step (Megatron's `_allreduce_word_embedding_grads`). Nothing to do on a
    /// whole model or with an untied output layer.
    public func allReduceTiedEmbeddingGradient(over embeddingGroup: Communicator?) throws {
        guard let embeddingGroup, embeddingGroup.size > 1, !untieEmbeddingsAndOutputWeights, !stage.isWhole,
              let weight = wordEmbeddings?.weight else { return }
        guard let grad = weight.grad else {
            throw TrainingStepError("the tied word embeddings have no gradient to all-reduce over the embedding group")
        }
        try embeddingGroup.allReduce(grad, op: .sum).wait()
    }
}
