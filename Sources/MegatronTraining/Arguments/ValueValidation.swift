extension PretrainArguments {
    /// The largest model size or batch dimension a flag may give: sizes are tensor dimensions, multiplied
    /// together when memory is reserved, so a larger one only ever overflows or fails to allocate.
    static let largestSize = Int(Int32.max)

    /// Each flag's value on its own: sizes, counts and intervals positive, rates and coefficients in their
    /// ranges. Checked first, so a zero interval or a negative size is named here rather than found later as
    /// a division by zero, an overflow or an empty tensor.
    func validateValues() throws {
        let sizes: [(String, Int?)] = [
            ("--num-layers", numLayers), ("--hidden-size", hiddenSize), ("--num-attention-heads", numAttentionHeads),
            ("--num-query-groups", groupQueryAttention ? numQueryGroups : nil), ("--kv-channels", kvChannels),
            ("--ffn-hidden-size", ffnHiddenSize), ("--seq-length", seqLength),
            ("--max-position-embeddings", maxPositionEmbeddings), ("--micro-batch-size", microBatchSize),
            ("--global-batch-size", globalBatchSize), ("--vocab-size", vocabSize), ("--padded-vocab-size", paddedVocabSize),
            ("--make-vocab-size-divisible-by", makeVocabSizeDivisibleBy)]
        for case let (flag, value?) in sizes {
            try requirePositive(flag, value)
            guard value <= Self.largestSize else {
                throw ArgumentError("\(flag) \(value) is too large: at most \(Self.largestSize)")
            }
        }
        let counts: [(String, Int?)] = [
            ("--log-interval", logInterval), ("--train-iters", trainIters), ("--train-samples", trainSamples),
            ("--eval-interval", evalInterval), ("--save-interval", saveInterval), ("--exit-interval", exitInterval),
            ("--lr-decay-iters", lrDecayIters), ("--lr-decay-samples", lrDecaySamples),
            ("--recompute-num-layers", recomputeNumLayers), ("--ddp-bucket-size", ddpBucketSize)]
        for case let (flag, value?) in counts { try requirePositive(flag, value) }
        for (flag, value) in [("--eval-iters", evalIters), ("--seed", seed), ("--lr-warmup-iters", lrWarmupIters),
                              ("--lr-warmup-samples", lrWarmupSamples),
                              ("--lr-wsd-decay-iters", lrWSDDecayIters ?? 0),
                              ("--lr-wsd-decay-samples", lrWSDDecaySamples ?? 0),
                              ("--tiktoken-num-special-tokens", tiktokenNumSpecialTokens)] {
            guard value >= 0 else { throw ArgumentError("\(flag) must be a non-negative integer, got \(value)") }
        }
        try validateRealValues()
    }

    /// The floating-point flags: learning rates, regularization, optimizer coefficients, initialization.
    private func validateRealValues() throws {
        for (flag, value) in [("--lr", lr ?? 0), ("--min-lr", minLR), ("--lr-warmup-init", lrWarmupInit),
                              ("--weight-decay", weightDecay), ("--start-weight-decay", startWeightDecay ?? 0),
                              ("--end-weight-decay", endWeightDecay ?? 0), ("--clip-grad", clipGrad),
                              ("--sgd-momentum", sgdMomentum), ("--init-method-std", initMethodStd),
                              ("--norm-epsilon", normEpsilon), ("--exit-duration-in-mins", exitDurationInMins ?? 0)] {
            guard value >= 0 else { throw ArgumentError("\(flag) must be >= 0, got \(value)") }
        }
        // Megatron's dropouts, and torch's Adam betas, are probabilities in [0, 1).
        for (flag, value) in [("--hidden-dropout", hiddenDropout), ("--attention-dropout", attentionDropout),
                              ("--adam-beta1", adamBeta1), ("--adam-beta2", adamBeta2)] {
            guard value >= 0 && value < 1 else { throw ArgumentError("\(flag) must be in [0, 1), got \(value)") }
        }
        for (flag, value) in [("--adam-eps", adamEps), ("--rotary-base", rotaryBase)] {
            guard value > 0 else { throw ArgumentError("\(flag) must be > 0, got \(value)") }
        }
        guard rotaryPercent > 0 && rotaryPercent <= 1 else {
            throw ArgumentError("--rotary-percent must be in (0, 1], got \(rotaryPercent)")
        }
        if let fraction = lrWarmupFraction, !(fraction >= 0 && fraction < 1) {
            throw ArgumentError("--lr-warmup-fraction must be in [0, 1), got \(fraction)")
        }
    }

    private func requirePositive(_ flag: String, _ value: Int) throws {
        guard value > 0 else { throw ArgumentError("\(flag) must be a positive integer, got \(value)") }
    }
}
