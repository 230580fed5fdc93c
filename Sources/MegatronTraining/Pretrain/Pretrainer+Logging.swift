import Foundation
import MegatronCore

extension Pretrainer {
    /// The iteration just finished as `TrainingReporter` takes it. The parameter norm (`--log-params-norm`)
    /// and the zeros in the gradients (`--log-num-zeros-in-grad`) are measured only on the iterations whose
    /// line or TensorBoard scalars show them, by every rank (their sums span the ranks); a skipped step has no
    /// zero count, as in Megatron.
    /// `batchSize` is the iteration's global batch (smaller during `--rampup-batch-size`).
    func iterationReport(_ step: TrainingStepResult, lr: Float, seconds: Double, batchSize: Int) throws -> IterationReport {
        let measured = reporter.measuresStatistics(iteration, of: schedule.trainIters)
        let paramsNorm = arguments.logParamsNorm && measured ? try optimizer.parameterNorm() : nil
        let zeros = arguments.logNumZerosInGrad && measured && step.updated
            ? try reporter.timers.time("optimizer-count-zeros", level: 1) { try optimizer.gradientZeroCount() } : nil
        return IterationReport(
            iteration: iteration, trainIters: schedule.trainIters, consumedSamples: consumedSamples,
            globalBatchSize: batchSize, step: step, learningRate: lr, lossScale: gradScaler?.scale ?? 1,
            seconds: seconds,
            flops: trainingFLOPs(config: model.config, vocabSize: model.vocabSize, sequenceLength: arguments.seqLength,
                                 batchSize: batchSize),
            paramsNorm: paramsNorm, numZeros: zeros)
    }

    /// Megatron's `save_checkpoint_and_time`: the save, its timer report and the progress line (every rank).
    func saveCheckpointAndTime() throws {
        try reporter.timers.time("save-checkpoint", level: 0) { try saveCheckpoint() }
        try reporter.checkpointSaved(iteration: iteration, consumedSamples: consumedSamples)
    }
}
