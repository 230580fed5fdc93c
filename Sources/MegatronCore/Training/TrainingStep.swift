import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Named timers the step reports its phases to (`forward-backward`, `optimizer` at level 1; `batch-generator`,
/// `forward-compute`, `backward-compute` at level 2), as Megatron's `timers`.
public protocol StepTimers: AnyObject {
    func time<R>(_ name: String, level: Int, _ body: () throws -> R) throws -> R
}

/// What one training iteration reports.
public struct TrainingStepResult {
    /// Token-weighted loss over every micro-batch of every data-parallel rank.
    public var loss: Double
    public var gradNorm: Float
    /// False when the step was skipped (inf/NaN gradients).
    public var updated: Bool
    /// The MoE aux losses as Megatron logs them (`load_balancing_loss`, `z_loss`, ...); empty without MoE.
    public var moeLosses: [String: Double] = [:]
}

/// One training iteration of a model: the micro-batches' forward and backward passes through a schedule,
/// the loss and token totals over the data-parallel ranks, the gradients finalized (sequence-parallel partial
/// gradients summed over the tensor-parallel ranks, the data-parallel reduction finished), then the optimizer
/// step, the scheduler and the loss scaler. `pretrain-gpt`, `bench train` and the parallel tests all train
/// through it.
///
/// Each micro-batch's loss is averaged over its tokens and divided by the micro-batch count, as Megatron's
/// loop; with `perTokenLoss` (`--calculate-per-token-loss`) the token sum is kept and the reduced gradients
/// are divided by the global batch's tokens instead.
///
/// ```swift
/// let step = TrainingStep(model: model, optimizer: optimizer, parallel: state, clipGrad: 1)
/// let result = try step.run(microBatches: 4, samples: 32, scheduler: &scheduler) { m in batches[m] }
/// print(result.loss, result.gradNorm)
/// ```
public final class TrainingStep {
    public let model: GPTModel
    public let optimizer: TrainingOptimizer
    public let parallel: ParallelState
    /// How the micro-batches run; pipeline schedules replace it.
    public var schedule: any ForwardBackwardSchedule = NoPipelining()
    public var clipGrad: Float
    public var perTokenLoss: Bool
    public var timers: (any StepTimers)?
    /// Called at each `Point` of an iteration: gradients can be inspected there (tests, debugging) without
    /// re-implementing the step.
    public var observer: ((Point) throws -> Void)?
    /// The model's MoE layers' part of the step (aux-loss scale, expert bias, logged losses).
    let moe: MoETraining

    /// Where in an iteration `observer` is called.
    public enum Point {
        /// Every micro-batch's backward has run; the data-parallel reduction may still be in flight.
        case backwardDone
        /// The gradients the optimizer steps on are final (reduced, partial sums added); the step comes next.
        case gradientsFinalized
    }

    public init(model: GPTModel, optimizer: TrainingOptimizer, parallel: ParallelState, clipGrad: Float = 0,
                perTokenLoss: Bool = false, timers: (any StepTimers)? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.parallel = parallel
        self.clipGrad = clipGrad
        self.perTokenLoss = perTokenLoss
        self.timers = timers
        moe = MoETraining(model: model)
    }

    /// Runs an iteration of `microBatches` micro-batches (`batch(m)` makes micro-batch `m` of this rank, on the
    /// model's device) and,
    /// when the step is taken, advances `scheduler` by `samples` (the global batch); without a loss scaler.
    public func run(microBatches: Int, samples: Int, scheduler: inout OptimizerParamScheduler,
                    batch: @escaping (Int) throws -> TrainingBatch) throws -> TrainingStepResult {
        var noScaler: (any GradScaler)?
        return try run(microBatches: microBatches, samples: samples, scheduler: &scheduler, gradScaler: &noScaler,
                       batch: batch)
    }

    /// `run` with `gradScaler`'s loss scale (fp16), which the step's inf/NaN check then updates.
    public func run(microBatches: Int, samples: Int, scheduler: inout OptimizerParamScheduler,
                    gradScaler: inout (any GradScaler)?, batch: @escaping (Int) throws -> TrainingBatch) throws -> TrainingStepResult {
        model.train()
        try optimizer.zeroGrad()
        let lossScale = gradScaler?.scale ?? 1
        moe.setAuxLossScale(lossScale: lossScale, contextParallel: parallel.context.size, microBatches: microBatches,
                            perTokenLoss: perTokenLoss)
        var localTokens = 0, totals: LossTotals?
        let passes = ForwardBackwardPasses(
            count: microBatches,
            forward: { [self] m in
                let inputs = try time("batch-generator", level: 2) { try batch(m) }
                return try time("forward-compute", level: 2) { model.maskedLoss(inputs) }
            },
            stageForward: { [self] m, chunk, input in
                let inputs = try time("batch-generator", level: 2) { try batch(m) }
                return try time("forward-compute", level: 2) { model.stageForward(inputs, input: input, chunk: chunk) }
            },
            backward: { [self] loss in
                let divisor = perTokenLoss ? 1 : Float(max(loss.tokens, 1) * microBatches)
                try time("backward-compute", level: 2) { (loss.sum * (lossScale / divisor)).backward() }
            },
            gradientSync: { [optimizer] m, body in try optimizer.microBatch(m, of: microBatches, body) },
            lossesComputed: { [self] lossSum, tokens in
                localTokens = tokens
                totals = try startLossTotals(lossSum, tokens: tokens)
            })
        // Gradients are finalized within forward-backward, as Megatron's schedules call `finalize_model_grads`.
        let onHost = try time("forward-backward", level: 1) { () -> PendingHostTensor in
            try schedule.run(passes)
            try observer?(.backwardDone)
            guard let totals else { throw TrainingStepError("the schedule ran no micro-batch (\(microBatches) requested)") }
            let onHost = try totals.startCopyToHost()
            try finalizeGradients()
            try observer?(.gradientsFinalized)
            return onHost
        }
        // Per-token loss: Megatron divides the reduced gradients by the global batch's unmasked tokens before
        // clipping. The data-parallel reduction already divided them by dp; the step divides by this factor as
        // it unscales.
        let dp = parallel.dataWithContext.size
        let gradientDivisor = perTokenLoss
            ? max(dp == 1 && parallel.pipeline.size == 1 ? Float(localTokens) : onHost.tensor().floats()[1], 1) / Float(dp)
            : 1
        let report = try time("optimizer", level: 1) {
            try optimizer.step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale * gradientDivisor)
        }
        gradScaler?.update(foundInf: !report.updated)
        if report.updated { scheduler.step(samples) }
        let summed = onHost.tensor().floats()
        return TrainingStepResult(loss: Double(summed[0]) / Double(summed[1]), gradNorm: report.gradNorm,
                                  updated: report.updated,
                                  moeLosses: try moe.takeLoggedLosses(microBatches: microBatches, group: parallel.tensorWithDataAndContext,
                                                                      dataParallel: parallel.data.size))
    }

    /// Sums the partial gradients of sequence-parallel parameters over the tensor-parallel ranks, finishes the
    /// data-parallel reduction and sums the tied embeddings' gradient over the pipeline's first and last
    /// stages: every rank then holds the gradients its optimizer steps on.
    func finalizeGradients() throws {
        TensorParallelGradients.allReducePartial(model, group: model.tensorParallel)
        try optimizer.finishGradientReduction()
        // As Megatron's `finalize_model_grads`: the tied embeddings' gradient is summed over the first and last
        // stages after the data-parallel reduction, which `--overlap-grad-reduce` starts during the backward.
        if let embedding = parallel.embedding, embedding.size > 1, let (name, weight) = model.pipelineSharedEmbedding {
            try embedding.allReduce(try optimizer.reducedGradient(of: name, weight), op: .sum).wait()
        }
        try moe.updateExpertBiases(group: parallel.tensorWithDataAndContext)
    }

    /// [loss sum, token count] of this rank's micro-batches, being summed over the data-parallel ranks.
    struct LossTotals {
        let totals: Tensor
        let reduction: CollectiveWork?
        /// The pipeline group, where the last stage's totals reach the other stages (which add zeros).
        let pipeline: Communicator?

        /// Orders the caller's stream after the sum and starts the copy to the host, read with `tensor()`.
        /// Called after the schedule: a pipeline-wide sum inside it would wait on stages still running.
        func startCopyToHost() throws -> PendingHostTensor {
            try reduction?.wait()
            if let pipeline { try pipeline.allReduce(totals, op: .sum).wait() }
            return totals.startCopyToHost()
        }
    }

    /// Starts summing [loss sum, token count] over the data-parallel ranks (one collective). Nothing waits for it
    /// until `LossTotals.startCopyToHost`: waiting at once would hold the compute stream until the slowest rank
    /// reaches this point.
    func startLossTotals(_ lossSum: Tensor, tokens: Int) throws -> LossTotals {
        let totals = withoutGrad {
            Ops.concat([lossSum.cast(to: .float32).reshaped([1]), Tensor(shape: [1], values: [Float(tokens)]).to(lossSum.device)],
                       dim: 0)
        }
        let group = parallel.dataWithContext
        return LossTotals(totals: totals, reduction: group.size > 1 ? try group.allReduce(totals, op: .sum) : nil,
                          pipeline: parallel.pipeline.size > 1 ? parallel.pipeline : nil)
    }

    private func time<R>(_ name: String, level: Int, _ body: () throws -> R) throws -> R {
        guard let timers else { return try body() }
        return try timers.time(name, level: level, body)
    }
}

/// A training step that cannot run as set up.
public struct TrainingStepError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
