import MegatronAutograd
import MegatronTensor

/// `y = x A^T + b` with `A`'s columns (input features) split over the tensor-parallel group: each rank
/// multiplies its slice of an already split input, and the partial products are summed (Megatron's
/// `RowParallelLinear` with `input_is_parallel`).
///
/// The sum is an all-reduce (`reduceFromRegion`), or under sequence parallelism a reduce-scatter along
/// the sequence. The bias is whole on every rank and added after the sum; under sequence parallelism each
/// rank adds it to its own positions only, so its gradient must be all-reduced over the group
/// (`TensorParallelGradients`).
///
/// ```swift
/// let fc2 = RowParallelLinear(inFeatures: 256, outFeatures: 64, group: tp, generator: gen)
/// let y = fc2(h)   // h: [batch, seq, 256 / tp.size] -> [batch, seq, 64]
/// ```
public final class RowParallelLinear: Module {
    /// This rank's columns `[outFeatures, inFeatures / size]`.
    public let weight: Tensor
    public let bias: Tensor?
    public let group: TensorParallelGroup
    /// The FP8 scaling of this layer's GEMMs when it runs in FP8 (`GPTModel.enableFP8`); nil: in its dtype.
    public var fp8: FP8LinearQuantizer?

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true, initMethod: InitMethod = .normal(std: 0.02),
                dtype: DType = .float32, group: TensorParallelGroup = .single, generator: PhiloxGenerator) {
        precondition(inFeatures % group.size == 0,
                     "row-parallel input features (\(inFeatures)) must split into \(group.size) equal blocks")
        self.group = group
        let master = initMethod.draw([outFeatures, inFeatures], dtype: dtype, generator: generator)
        weight = parameter(try! TensorParallelSharding.split(dim: 1).shard(master, rank: group.rank, size: group.size))
        self.bias = bias ? parameter(Tensor.zeros([outFeatures], dtype: dtype)) : nil
        super.init()
        setAttributes(ofParameter: "weight") { $0.tensorParallel = .split(dim: 1) }
        // Whole on every rank and added after the sum: under sequence parallelism to this rank's positions only.
        if bias { setAttributes(ofParameter: "bias") { $0.partialGradient = group.sequenceParallel } }
    }

    override public var parameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        forward { bias in
            fp8.map { Functional.fp8Linear(x, weight: weight, bias: bias, quantizer: $0) }
                ?? Functional.linear(x, weight: weight, bias: bias)
        }
    }

    /// `self(activation(x))` with the activation recomputed in backward rather than kept
    /// (`Functional.linear(activationOf:)`): the MLP's `linear_fc2` over `linear_fc1`'s output.
    public func callAsFunction(activationOf x: Tensor, _ activation: RecomputedActivation) -> Tensor {
        forward { bias in
            fp8.map { Functional.fp8Linear(x, activation: activation, weight: weight, bias: bias, quantizer: $0) }
                ?? Functional.linear(activationOf: x, activation, weight: weight, bias: bias)
        }
    }

    /// The local product `linear(bias)` summed over the group, then the bias. `linear` gets the bias
    /// only on one rank (nil otherwise); the MLP passes its fused GeLU MLP here. This layer's forward hooks
    /// run around it.
    func forward(_ linear: (Tensor?) -> Tensor) -> Tensor {
        runForward {
            // One rank has nothing to sum, so the bias can ride in the GEMM's epilogue.
            guard group.size > 1 else { return linear(bias) }
            let partial = linear(nil)
            let y = group.sequenceParallel
                ? TensorParallelMappings.reduceScatterToSequenceParallelRegion(partial, group)
                : TensorParallelMappings.reduceFromRegion(partial, group)
            return bias.map { y + $0 } ?? y
        }
    }
}
