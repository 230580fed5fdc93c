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
        if positionEmbeddingType == .rope {
            let headSize = kvChannels ?? hiddenSize / numAttentionHeads
            let rotary = Int(Float(headSize) * rotaryPercent)
            try require(rotary % 2 == 0, "--position-embedding-type rope rotates pairs of channels, but the head size "
                            + "\(headSize) x --rotary-percent \(rotaryPercent) gives \(rotary)")
        }
        if recomputeGranularity == .full, let layers = recomputeNumLayers {
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

    /// `--ffn-hidden-size`, or Megatron's default: 4 x hidden, or int(8 x hidden / 3 / 64) x 64 with `--swiglu`.
    var resolvedFFNHiddenSize: Int {
        ffnHiddenSize ?? (swiglu ? Int(Float(8 * hiddenSize) / 3 / 64) * 64 : 4 * hiddenSize)
    }
}
