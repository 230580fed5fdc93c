import MegatronAutograd
import MegatronTensor

/// What a schedule runs for one iteration: the micro-batches' forward and backward passes and the gradient
/// reduction switch, supplied by `TrainingStep`.
public struct ForwardBackwardPasses {
    /// Micro-batches in the iteration (on this data-parallel rank).
    public let count: Int
    /// The forward of micro-batch `m`: its loss (batch fetching included).
    public let forward: (_ m: Int) throws -> MicroBatchLoss
    /// The forward of micro-batch `m` through model chunk `chunk` of a pipeline stage, from `input` (the
    /// activation received from the previous stage; nil in the chunk that embeds the tokens): the activation
    /// to send on, or in the chunk that ends the model the loss.
    public let stageForward: (_ m: Int, _ chunk: Int, _ input: Tensor?) throws -> PipelineStageOutput
    /// The backward of a micro-batch's loss, scaled as the step asks; gradients accumulate.
    public let backward: (MicroBatchLoss) throws -> Void
    /// Runs micro-batch `m`'s passes with the data-parallel gradient reduction on for the last one only.
    public let gradientSync: (_ m: Int, _ body: () throws -> Void) throws -> Void
    /// Receives the iteration's detached loss sum and token count once the last forward is done, before its
    /// backward, so their data-parallel total can travel while the backward runs.
    public let lossesComputed: (_ lossSum: Tensor, _ tokens: Int) throws -> Void
}

/// How one iteration's micro-batches run (Megatron's `forward_backward_func`): without pipelining one after
/// another; pipeline schedules (1F1B, interleaved) interleave them with stage-to-stage sends.
public protocol ForwardBackwardSchedule {
    func run(_ passes: ForwardBackwardPasses) throws
}

/// Megatron's `forward_backward_no_pipelining`: each micro-batch's forward then backward, every backward but
/// the last without gradient reduction.
public struct NoPipelining: ForwardBackwardSchedule {
    public init() {}

    public func run(_ passes: ForwardBackwardPasses) throws {
        var lossSum: Tensor?, tokens = 0
        for m in 0..<passes.count {
            try passes.gradientSync(m) {
                let loss = try passes.forward(m)
                lossSum = lossSum.map { $0 + loss.sum.detached() } ?? loss.sum.detached()
                tokens += loss.tokens
                if m == passes.count - 1 { try passes.lossesComputed(lossSum!, tokens) }
                try passes.backward(loss)
            }
        }
    }
}
