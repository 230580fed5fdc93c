extension PretrainArguments {
    /// Megatron's learning-rate schedule checks in the flags' own units (iterations or samples), the sample
    /// counts the run derives, then the scheduler's own checks: a schedule that cannot work stops before the
    /// model is built.
    func validateSchedule(dataParallelSize: Int) throws {
        if let lr {
            guard minLR <= lr else { throw ArgumentError("--min-lr (\(minLR)) must not exceed --lr (\(lr))") }
            guard lrWarmupInit <= lr else { throw ArgumentError("--lr-warmup-init (\(lrWarmupInit)) must not exceed --lr (\(lr))") }
        }
        try validateScheduleLengths()
        let batch = globalBatchSize ?? microBatchSize * dataParallelSize
        try validateSampleCounts(globalBatchSize: batch)
        if batch % (microBatchSize * dataParallelSize) == 0 {
            try validateInterleaving(microBatches: batch / (microBatchSize * dataParallelSize))
        }
        _ = try TrainingSchedule.scheduler(self, globalBatchSize: batch)
    }

    /// Warmup shorter than the decay, the WSD anneal within it: `--lr-*-iters` with `--train-iters`,
    /// `--lr-*-samples` with `--train-samples` (mixing them is the scheduler's error).
    private func validateScheduleLengths() throws {
        let unit: String, length: Int, decay: Int?, warmup: Int, anneal: Int?
        if let trainIters {
            (unit, length, decay, warmup, anneal) = ("iters", trainIters, lrDecayIters, lrWarmupIters, lrWSDDecayIters)
        } else if let trainSamples {
            (unit, length, decay, warmup, anneal) = ("samples", trainSamples, lrDecaySamples, lrWarmupSamples, lrWSDDecaySamples)
        } else {
            return
        }
        let decayLength = decay ?? length
        let decayName = decay == nil ? "the lr decay length, --train-\(unit) (\(length))" : "--lr-decay-\(unit) (\(decayLength))"
        if lrWarmupFraction == nil && warmup > 0 && warmup >= decayLength {
            throw ArgumentError("--lr-warmup-\(unit) (\(warmup)) must be less than \(decayName)")
        }
        if lrDecayStyle == .wsd, let anneal, anneal > decayLength {
            throw ArgumentError("--lr-wsd-decay-\(unit) (\(anneal)) must not exceed \(decayName)")
        }
    }

    /// The sample counts derived from iteration counts (x the global batch) fit in 64 bits.
    private func validateSampleCounts(globalBatchSize batch: Int) throws {
        for case let (flag, iterations?) in [("--train-iters", trainIters), ("--lr-decay-iters", lrDecayIters),
                                             ("--lr-warmup-iters", lrWarmupIters), ("--lr-wsd-decay-iters", lrWSDDecayIters)] {
            guard !iterations.multipliedReportingOverflow(by: batch).overflow else {
                throw ArgumentError("\(flag) \(iterations) is too large: \(iterations) iterations of \(batch) samples "
                    + "overflow a 64-bit sample count")
            }
        }
        // The validation and test sets hold eval-iters global batches per evaluation (Megatron's sizes).
        let iterations = trainIters ?? (trainSamples ?? 0) / batch
        let evaluations = iterations / (evalInterval ?? max(iterations, 1)) + 1
        let perEvaluation = evalIters.multipliedReportingOverflow(by: batch)
        guard !perEvaluation.overflow, !perEvaluation.partialValue.multipliedReportingOverflow(by: evaluations).overflow else {
            throw ArgumentError("--eval-iters \(evalIters) is too large: \(evaluations) evaluations of \(evalIters) batches of "
                + "\(batch) samples overflow a 64-bit sample count")
        }
    }
}
