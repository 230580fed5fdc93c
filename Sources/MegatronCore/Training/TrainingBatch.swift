import MegatronAutograd
import MegatronTensor

/// One micro-batch as tensors: token ids and next-token labels `[batch, seq]`, and the loss mask (nil: all ones).
public struct TrainingBatch {
    public var tokens: Tensor
    public var labels: Tensor
    public var lossMask: Tensor?
    /// Tokens the loss counts (the loss mask's sum; every token without one), counted where the batch is
    /// made, on the host: reading it back from the GPU in the step would drain the GPU's queue.
    public let maskedTokens: Int

    public init(tokens: Tensor, labels: Tensor, lossMask: Tensor? = nil) {
        self.init(tokens: tokens, labels: labels, lossMask: lossMask,
                  maskedTokens: lossMask.map { Int($0.sum().item().rounded()) } ?? tokens.count)
    }

    private init(tokens: Tensor, labels: Tensor, lossMask: Tensor?, maskedTokens: Int) {
        (self.tokens, self.labels, self.lossMask, self.maskedTokens) = (tokens, labels, lossMask, maskedTokens)
    }

    /// The batch's tensors on `device`.
    public func to(_ device: Device) -> TrainingBatch {
        TrainingBatch(tokens: tokens.to(device), labels: labels.to(device), lossMask: lossMask?.to(device),
                      maskedTokens: maskedTokens)
    }
}

/// A micro-batch's loss as a schedule passes it on: the sum of its token losses under the loss mask (with
/// its autograd graph) and the number of tokens in it.
public struct MicroBatchLoss {
    public var sum: Tensor
    public var tokens: Int

    public init(sum: Tensor, tokens: Int) {
        self.sum = sum
        self.tokens = tokens
    }
}

extension GPTModel {
    /// The sum of `batch`'s per-token losses under its loss mask, and the tokens it keeps.
    public func maskedLoss(_ batch: TrainingBatch) -> MicroBatchLoss {
        MicroBatchLoss(losses: loss(tokens: batch.tokens, labels: batch.labels), batch: batch)
    }
}

extension MicroBatchLoss {
    /// The sum of per-token `losses` `[batch, seq]` under `batch`'s loss mask, and the tokens it keeps.
    init(losses: Tensor, batch: TrainingBatch) {
        guard let mask = batch.lossMask else {
            self.init(sum: losses.sum(), tokens: losses.count)
            return
        }
        self.init(sum: (losses * mask).sum(), tokens: batch.maskedTokens)
    }
}
