import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Cross-entropy of logits whose vocabulary dimension is split over the tensor-parallel group, without
/// gathering them (Megatron's `vocab_parallel_cross_entropy`).
///
/// Three small all-reduces replace the gather of `[tokens, vocab]` logits: the max logit per token, the
/// sum of exponentials per token, and the target's logit (held by one rank, zero elsewhere). The backward
/// needs no communication: each rank's gradient is its slice of `softmax - onehot`.
///
/// ```swift
/// let losses = VocabParallelCrossEntropy.loss(localLogits, labels: labels, group: tp)   // [batch, seq]
/// ```
public enum VocabParallelCrossEntropy {
    /// Loss per token of `logits [..., vocab / size]` (this rank's slice) against integer `labels [...]`
    /// (full vocabulary ids). Positions labelled `ignoreIndex` get loss 0 and no gradient.
    public static func loss(_ logits: Tensor, labels: Tensor, group: TensorParallelGroup,
                            ignoreIndex: Int = -100) -> Tensor {
        let vocabLocal = logits.shape.last!
        let tokens = labels.count
        precondition(logits.count == tokens * vocabLocal,
                     "logits \(logits.shape) do not match labels \(labels.shape) with a last dimension of \(vocabLocal)")
        let comm = TensorParallelMappings.multiRank(group)
        let x = logits.detached().reshaped([tokens, vocabLocal]).cast(to: .float32)
        let flatLabels = labels.reshaped([tokens, 1])
        let slice = VocabSlice(start: group.rank * vocabLocal, count: vocabLocal, ids: flatLabels)
        let counted = Ops.compare(flatLabels.cast(to: .float32), Tensor(scalar: Float(ignoreIndex)), .notEqual)
            .cast(to: .float32)
        let target = Ops.binary(slice.owned, counted, .mul)

        var maxLogit = Ops.reduce(x, dims: [1], keepDim: true, .max)
        if let comm { maxLogit = comm.allReduced(maxLogit, .max) }
        let shifted = Ops.binary(x, maxLogit, .sub)
        let exps = Ops.unary(shifted, .exp)
        var sumExp = Ops.reduce(exps, dims: [1], keepDim: true, .sum)
        if let comm { sumExp = comm.allReduced(sumExp) }
        var targetLogit = Ops.binary(Ops.gather(shifted, dim: 1, index: slice.localIndex), target, .mul)
        if let comm { targetLogit = comm.allReduced(targetLogit) }
        let perToken = Ops.binary(Ops.binary(Ops.unary(sumExp, .log), targetLogit, .sub), counted, .mul)

        let (logitsShape, logitsType) = (logits.shape, logits.dtype)
        return record("vocabParallelCrossEntropy", inputs: [logits], output: perToken.reshaped(labels.shape)) { g in
            let scale = Ops.binary(g.reshaped([tokens, 1]).cast(to: .float32), counted, .mul)
            let softmax = Ops.binary(Ops.binary(exps, sumExp, .div), scale, .mul)
            let hit = Ops.binary(Ops.binary(target, scale, .mul), Tensor(scalar: -1), .mul)
            let grad = Ops.scatterAdd(softmax, dim: 1, index: slice.localIndex, source: hit)
            return [grad.reshaped(logitsShape).cast(to: logitsType)]
        }
    }
}
