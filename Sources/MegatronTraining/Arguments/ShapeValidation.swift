extension PretrainArguments {
    /// The model flags against each other and against the tensor-parallel size, named as flags (the model's
    /// own checks, which also guard checkpoints and imports, name its configuration fields).
    func validateModelShape() throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require(kvChannels != nil || hiddenSize % numAttentionHeads == 0,
                    "--hidden-size (\(hiddenSize)) must be divisible by --num-attention-heads (\(numAttentionHeads)), "
                        + "or give the head size with --kv-channels")
        if groupQueryAttention {
            try require(numAttentionHeads % numQueryGroups == 0,
                        "--num-attention-heads (\(numAttentionHeads)) must be divisible by --num-query-groups (\(numQueryGroups))")
        }
        if recomputeGranularity == "full", let layers = recomputeNumLayers {
            try require(layers <= numLayers, "--recompute-num-layers (\(layers)) must be between 1 and --num-layers (\(numLayers))")
        }
        try require(resolvedFFNHiddenSize > 0, "the default --ffn-hidden-size with --swiglu, int(8 x --hidden-size "
                        + "\(hiddenSize) / 3 / 64) x 64, is 0 for so small a model; give --ffn-hidden-size")
        let tp = tensorModelParallelSize
        try require(resolvedFFNHiddenSize % tp == 0,
                    "\(ffnHiddenSize == nil ? "the default --ffn-hidden-size" : "--ffn-hidden-size") "
                        + "(\(resolvedFFNHiddenSize)) must be divisible by --tensor-model-parallel-size (\(tp))")
        if sequenceParallel && tp > 1 {
            try require(seqLength % tp == 0,
                        "--seq-length (\(seqLength)) must be divisible by --tensor-model-parallel-size (\(tp)) with "
                            + "--sequence-parallel: each rank keeps 1/\(tp) of the sequence")
        }
        if usesEmbeddedCorpus {
            let longest = EmbeddedCorpus(seed: seed).longestSequence
            try require(seqLength <= longest,
                        "--seq-length \(seqLength) is longer than the built-in corpus allows (at most \(longest) tokens, "
                            + "its validation split less one); use a shorter --seq-length or train on your data with "
                            + "--data-path (or --mock-data)")
        }
    }

    /// Megatron's learning-rate schedule checks, in the flags' own units, then the scheduler's own checks, so a
    /// schedule that cannot work stops before the model is built.
    func validateSchedule(dataParallelSize: Int) throws {
        if let lr {
            guard minLR <= lr else { throw ArgumentError("--min-lr (\(minLR)) must not exceed --lr (\(lr))") }
            guard lrWarmupInit <= lr else { throw ArgumentError("--lr-warmup-init (\(lrWarmupInit)) must not exceed --lr (\(lr))") }
        }
        if let iterations = trainIters {
            try requireWarmupShorterThanDecay(warmup: ("--lr-warmup-iters", lrWarmupIters),
                                              decay: lrDecayIters.map { ("--lr-decay-iters", $0) }
                                                  ?? ("the lr decay length, --train-iters", iterations))
        } else if let samples = trainSamples {
            try requireWarmupShorterThanDecay(warmup: ("--lr-warmup-samples", lrWarmupSamples),
                                              decay: lrDecaySamples.map { ("--lr-decay-samples", $0) }
                                                  ?? ("the lr decay length, --train-samples", samples))
        }
        let batch = globalBatchSize ?? microBatchSize * dataParallelSize
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
        _ = try TrainingSchedule.scheduler(self, globalBatchSize: batch)
    }

    private func requireWarmupShorterThanDecay(warmup: (String, Int), decay: (String, Int)) throws {
        guard lrWarmupFraction == nil, warmup.1 > 0 else { return }
        guard warmup.1 < decay.1 else {
            throw ArgumentError("\(warmup.0) (\(warmup.1)) must be less than \(decay.0) (\(decay.1))")
        }
    }

    /// `--ffn-hidden-size`, or Megatron's default: 4 x hidden, or int(8 x hidden / 3 / 64) x 64 with `--swiglu`.
    var resolvedFFNHiddenSize: Int {
        ffnHiddenSize ?? (swiglu ? Int(Float(8 * hiddenSize) / 3 / 64) * 64 : 4 * hiddenSize)
    }
}
