import MegatronAutograd
import MegatronTensor

/// `y = x A^T + b` with `A`'s rows (output features) split over the tensor-parallel group: each rank
/// computes its slice of the outputs from the whole input (Megatron's `ColumnParallelLinear`).
///
/// The input enters through `copyToRegion` (its gradient is all-reduced), or under sequence parallelism
/// through `gatherFromSequenceParallelRegion` (the sequence shards are all-gathered). The weight is drawn
/// whole from `generator` and sliced, so the same seed gives the same model for every group size.
///
/// ```swift
/// let fc1 = ColumnParallelLinear(inFeatures: 64, outFeatures: 256, group: tp, generator: gen)
/// let h = fc1(x)   // [batch, seq, 256 / tp.size]
/// ```
public final class ColumnParallelLinear: Module {
    /// This rank's rows `[outFeatures / size, inFeatures]`.
    public let weight: Tensor
    public let bias: Tensor?
    public let group: TensorParallelGroup
    /// `.split(dim: 0)`, `.splitHalves(dim: 0)` when the outputs are two halves split separately (SwiGLU), or
    /// `.splitSections` for outputs of several sections each split separately (Gated DeltaNet's `in_proj`).
    public let sharding: TensorParallelSharding
    /// Whether to all-gather the outputs so every rank gets all of them.
    public let gatherOutput: Bool
    /// The FP8 scaling of this layer's GEMMs when it runs in FP8 (`GPTModel.enableFP8`); nil: in its dtype.
    public var fp8: FP8LinearQuantizer?

    /// `sections` (whole lengths adding up to `outFeatures`) splits each section separately.
    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true, splitHalves: Bool = false, sections: [Int]? = nil,
                gatherOutput: Bool = false, initMethod: InitMethod = .normal(std: 0.02), dtype: DType = .float32,
                group: TensorParallelGroup = .single, generator: PhiloxGenerator) {
        let blocks = splitHalves ? 2 * group.size : group.size
        precondition(outFeatures % blocks == 0,
                     "column-parallel output features (\(outFeatures)) must split into \(blocks) equal blocks")
        precondition(sections.map { $0.reduce(0, +) == outFeatures && $0.allSatisfy { $0 % group.size == 0 } } ?? true,
                     "column-parallel sections \(sections ?? []) must add up to \(outFeatures) and each split into \(group.size) blocks")
        self.group = group
        self.gatherOutput = gatherOutput
        sharding = sections.map { .splitSections(dim: 0, lengths: $0) } ?? (splitHalves ? .splitHalves(dim: 0) : .split(dim: 0))
        let master = initMethod.draw([outFeatures, inFeatures], dtype: dtype, generator: generator)
        weight = parameter(try! sharding.shard(master, rank: group.rank, size: group.size))
        self.bias = bias ? parameter(Tensor.zeros([outFeatures / group.size], dtype: dtype)) : nil
        super.init()
        // The bias follows the output features, as the weight's rows.
        setAttributesOfParameters { [sharding] in $0.tensorParallel = sharding }
    }

    override public var parameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        runForward {
            let input = Self.enter(x, group)
            let y = fp8.map { Functional.fp8Linear(input, weight: weight, bias: bias, quantizer: $0) }
                ?? Functional.linear(input, weight: weight, bias: bias)
            return gatherOutput ? TensorParallelMappings.gatherFromRegion(y, group) : y
        }
    }

    /// The column-parallel product of `x` with a weight held elsewhere (the output layer tied to the
    /// vocabulary-parallel word embeddings). A linear layer, so an untied output weight gets the fused
    /// weight-gradient accumulation into its main grad.
    public static func forward(_ x: Tensor, weight: Tensor, group: TensorParallelGroup) -> Tensor {
        Functional.linear(enter(x, group), weight: weight, bias: nil)
    }

    /// The input as every rank needs it: whole, with its gradient summed over the group on the way back.
    static func enter(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        group.sequenceParallel
            ? TensorParallelMappings.gatherFromSequenceParallelRegion(x, group)
            : TensorParallelMappings.copyToRegion(x, group)
    }
}
