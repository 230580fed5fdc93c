import MegatronAutograd
import MegatronTensor

extension GPTModel {
    /// This single-rank model's weights as rank `group.rank`'s part of a model for `group` (after a Hugging
    /// Face import or a single-rank checkpoint load). `paddedVocabSize` zero-pads the vocabulary first, for
    /// Megatron's multiple of `make_vocab_size_divisible_by x TP`; by default it stays as it is.
    ///
    /// ```swift
    /// let whole = try HuggingFaceGPT.load(directory: dir).model
    /// let padded = TensorParallelGroup.paddedVocabSize(vocab, tensorParallelSize: tp.size)
    /// let part = try whole.tensorParallelShard(for: tp, paddedVocabSize: padded)
    /// ```
    public func tensorParallelShard(for group: TensorParallelGroup, paddedVocabSize: Int? = nil,
                                    seed: UInt64 = 1234) throws -> GPTModel {
        guard tensorParallel.size == 1 else {
            throw ConfigError("tensorParallelShard splits a single-rank model; this one is already split over \(tensorParallel.size) ranks")
        }
        let vocab = paddedVocabSize ?? vocabSize
        guard vocab >= vocabSize else {
            throw ConfigError("padded vocab size \(vocab) is smaller than the model's vocabulary \(vocabSize)")
        }
        let part = try GPTModel(config: config, vocabSize: vocab, maxSequenceLength: maxSequenceLength,
                                untieEmbeddingsAndOutputWeights: outputLayer != nil, seed: seed, tensorParallel: group,
                                decoderSpec: decoderSpec)
        var state = stateDict()
        for name in ["embedding.word_embeddings.weight", "output_layer.weight"] where state[name] != nil {
            state[name] = Self.zeroPadRows(state[name]!, to: vocab)
        }
        try part.loadStateDict(TensorParallelResharding.shard(state, shardings: tensorParallelShardings(),
                                                               rank: group.rank, size: group.size))
        return part
    }

    /// One single-rank model from every rank's part, in rank order (for export or a single-rank checkpoint).
    public static func mergingTensorParallelShards(_ parts: [GPTModel], seed: UInt64 = 1234) throws -> GPTModel {
        guard let first = parts.first else { throw ConfigError("merging needs at least one tensor-parallel part") }
        guard parts.count == first.tensorParallel.size else {
            throw ConfigError("\(parts.count) parts for a model split over \(first.tensorParallel.size) ranks")
        }
        let whole = try GPTModel(config: first.config, vocabSize: first.vocabSize, maxSequenceLength: first.maxSequenceLength,
                                 untieEmbeddingsAndOutputWeights: first.outputLayer != nil, seed: seed, tensorParallel: .single,
                                 decoderSpec: first.decoderSpec)
        try whole.loadStateDict(TensorParallelResharding.merge(parts.map { $0.stateDict() },
                                                               shardings: first.tensorParallelShardings()))
        return whole
    }

    /// Throws unless this model is whole: files in the single-rank layout must not receive one rank's slices.
    func requireWhole(for operation: String) throws {
        guard tensorParallel.size == 1 else {
            throw CheckpointError("\(operation) needs the whole model, but this is rank \(tensorParallel.rank) of a "
                + "\(tensorParallel.size)-way tensor-parallel split; merge it first "
                + "(TensorParallelResharding.gather or GPTModel.mergingTensorParallelShards)")
        }
    }

    /// `t` with zero rows appended up to `rows` (a vocabulary table padded for more tensor-parallel ranks).
    public static func zeroPadRows(_ t: Tensor, to rows: Int) -> Tensor {
        if t.size(0) == rows { return t }
        let padding = Tensor.zeros([rows - t.size(0), t.size(1)], dtype: t.dtype, device: t.device)
        return Ops.concat([t, padding], dim: 0)
    }
}
