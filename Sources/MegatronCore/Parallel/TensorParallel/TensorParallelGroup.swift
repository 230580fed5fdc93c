import MegatronParallel

/// The tensor-parallel group a model is built for: the ranks that split its weight matrices, and whether
/// activations outside the split regions are also split along the sequence (sequence parallelism).
///
/// A single rank (`.single`, or any group of size 1) makes every tensor-parallel mapping an identity, so a
/// model built for it is the plain single-device model.
///
/// ```swift
/// let tp = TensorParallelGroup(communicator, sequenceParallel: true)
/// let model = try GPTModel(config: config, vocabSize: 512, maxSequenceLength: 64, tensorParallel: tp)
/// ```
public struct TensorParallelGroup {
    /// The ranks of the group; nil for a single rank.
    public let communicator: Communicator?
    /// Norms, dropout and residuals work on `seq / size` positions per rank (Megatron's `--sequence-parallel`).
    /// Ignored on a single rank, as Megatron ignores it at TP = 1.
    public let sequenceParallel: Bool

    public init(_ communicator: Communicator?, sequenceParallel: Bool = false) {
        self.communicator = communicator
        self.sequenceParallel = sequenceParallel && (communicator?.size ?? 1) > 1
    }

    /// One rank: no splitting at all.
    public static var single: TensorParallelGroup { TensorParallelGroup(nil) }

    /// Ranks in the group (Megatron's `tensor_model_parallel_size`).
    public var size: Int { communicator?.size ?? 1 }
    /// This rank's index in the group.
    public var rank: Int { communicator?.rank ?? 0 }

    /// `count / size`, or an error naming `what` when `count` does not split evenly.
    func partition(_ count: Int, _ what: String) throws -> Int {
        guard count % size == 0 else {
            throw ConfigError("\(what) (\(count)) must be divisible by the tensor-parallel size (\(size))")
        }
        return count / size
    }

    /// Checks that a GPT model of `config` with a padded vocabulary of `vocabSize` splits over this group.
    func validate(_ config: TransformerConfig, vocabSize: Int) throws {
        _ = try partition(config.numAttentionHeads, "num_attention_heads")
        _ = try partition(config.numQueryGroups, "num_query_groups")
        _ = try partition(config.ffnHiddenSize, "ffn_hidden_size")
        if let gdn = config.gatedDeltaNet {
            _ = try partition(gdn.numKeyHeads, "linear_num_key_heads")
            _ = try partition(gdn.numValueHeads, "linear_num_value_heads")
        }
        guard vocabSize % size == 0 else {
            throw ConfigError("padded vocab size (\(vocabSize)) must be divisible by the tensor-parallel size (\(size)); "
                + "Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x TP, e.g. "
                + "\(Self.paddedVocabSize(vocabSize, makeVocabSizeDivisibleBy: 128, tensorParallelSize: size))")
        }
    }

    /// Megatron's vocabulary padding: the smallest multiple of `makeVocabSizeDivisibleBy * tensorParallelSize`
    /// that holds `vocabSize` tokens, so every rank gets an equal slice of a 128-aligned table.
    ///
    /// ```swift
    /// TensorParallelGroup.paddedVocabSize(50257, tensorParallelSize: 2)   // 50432
    /// ```
    public static func paddedVocabSize(_ vocabSize: Int, makeVocabSizeDivisibleBy: Int = 128,
                                       tensorParallelSize: Int) -> Int {
        let multiple = makeVocabSizeDivisibleBy * tensorParallelSize
        return (vocabSize + multiple - 1) / multiple * multiple
    }
}
