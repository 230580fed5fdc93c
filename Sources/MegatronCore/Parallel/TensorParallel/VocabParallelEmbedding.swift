import MegatronAutograd
import MegatronTensor

/// A token embedding table with its rows (the vocabulary) split over the tensor-parallel group
/// (Megatron's `VocabParallelEmbedding`).
///
/// Each rank looks up the tokens that fall in its slice of the vocabulary, contributes zeros for the
/// others, and the ranks' results are summed: an all-reduce, or with `reduceScatter` a reduce-scatter
/// along the sequence that leaves each rank its sequence-parallel shard.
///
/// ```swift
/// let embedding = VocabParallelEmbedding(count: 512, dimension: 64, group: tp, generator: gen)
/// let h = embedding(tokens)   // [batch, seq, 64] on every rank
/// ```
public final class VocabParallelEmbedding: Module {
    /// This rank's rows `[count / size, dimension]`.
    public let weight: Tensor
    public let group: TensorParallelGroup
    /// The first token id of this rank's slice.
    public let vocabStart: Int

    public init(count: Int, dimension: Int, initMethod: InitMethod = .normal(std: 0.02), dtype: DType = .float32,
                group: TensorParallelGroup = .single, generator: PhiloxGenerator) {
        precondition(count % group.size == 0,
                     "vocabulary size (\(count)) must be divisible by the tensor-parallel size (\(group.size))")
        self.group = group
        vocabStart = group.rank * (count / group.size)
        let master = initMethod.draw([count, dimension], dtype: dtype, generator: generator)
        weight = parameter(try! TensorParallelSharding.split(dim: 0).shard(master, rank: group.rank, size: group.size))
        super.init()
        setAttributes(ofParameter: "weight") { $0.tensorParallel = .split(dim: 0) }
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    /// Embeddings of integer `ids [batch, seq]`: `[batch, seq, dimension]`, or with `reduceScatter`
    /// `[batch, seq / size, dimension]`.
    public func callAsFunction(_ ids: Tensor, reduceScatter: Bool = false) -> Tensor {
        runForward { lookUp(ids, reduceScatter: reduceScatter) }
    }

    private func lookUp(_ ids: Tensor, reduceScatter: Bool) -> Tensor {
        guard group.size > 1 else { return Functional.embedding(ids, weight: weight) }
        let slice = VocabSlice(start: vocabStart, count: weight.size(0), ids: ids)
        // The mask in the weight's dtype: an fp32 mask would widen every activation after it to fp32.
        let partial = Functional.embedding(slice.localIndex, weight: weight) * slice.owned.cast(to: weight.dtype).unsqueezed(-1)
        return reduceScatter
            ? TensorParallelMappings.reduceScatterToSequenceParallelRegion(partial, group)
            : TensorParallelMappings.reduceFromRegion(partial, group)
    }
}

/// Where token ids fall relative to one rank's slice `start..<start + count` of the vocabulary.
struct VocabSlice {
    /// 1 where the id is in the slice, else 0 (float32, the shape of the ids).
    let owned: Tensor
    /// The id's row in the slice, clamped into it for ids outside (int64, the shape of the ids).
    let localIndex: Tensor

    init(start: Int, count: Int, ids: Tensor) {
        let id = ids.cast(to: .float32)
        let atOrAfter = Ops.compare(id, Tensor(scalar: Float(start)), .greaterEqual).cast(to: .float32)
        let before = Ops.compare(id, Tensor(scalar: Float(start + count)), .less).cast(to: .float32)
        owned = Ops.binary(atOrAfter, before, .mul)
        let shifted = Ops.binary(id, Tensor(scalar: Float(start)), .sub)
        let clamped = Ops.binary(Ops.binary(shifted, Tensor(scalar: 0), .maximum), Tensor(scalar: Float(count - 1)), .minimum)
        localIndex = clamped.cast(to: .int64)
    }
}
