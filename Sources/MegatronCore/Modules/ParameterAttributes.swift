import MegatronTensor

/// What a parameter is beyond its values, set by the module that creates it, where it creates it (Megatron's
/// parameter attributes: `tensor_model_parallel` / `partition_dim` / `partition_stride`, `sequence_parallel`,
/// `shared`, and `allreduce = False` for experts). Tensor-parallel gradient sums, gradient statistics and the
/// checkpoint resharding read them (`Module.namedParameterAttributes`) instead of matching parameter names.
///
/// ```swift
/// let proj = RowParallelLinear(inFeatures: 256, outFeatures: 64, group: tp, generator: gen)
/// proj.attributes(ofParameter: "weight").tensorParallel   // .split(dim: 1)
/// proj.attributes(ofParameter: "bias").partialGradient    // tp.sequenceParallel
/// ```
public struct ParameterAttributes: Equatable, Sendable {
    /// How the parameter is laid out over a tensor-parallel group; `.duplicated` when every rank holds it
    /// whole. The same for every group size, so a single-rank model describes how to split its own weights.
    public var tensorParallel: TensorParallelSharding
    /// Every rank holds the parameter whole but computes only part of its gradient, so the gradient is summed
    /// over the tensor-parallel group after backward (`TensorParallelGradients`): Megatron's `sequence_parallel`
    /// (the norms and row-parallel biases under sequence parallelism, which see only this rank's positions),
    /// and on more than one rank the per-head norms (query / key norms, Gated DeltaNet's `out_norm`), which see
    /// only this rank's heads.
    public var partialGradient: Bool
    /// Used by a second module too: the word embeddings that are also the output layer's weight (tied).
    public var shared: Bool
    /// Belongs to one expert of a mixture-of-experts layer, whose gradient is reduced over the expert
    /// data-parallel group rather than the data-parallel group. No layer creates one yet (MoE: issue #21).
    public var expert: Bool

    public init(tensorParallel: TensorParallelSharding = .duplicated, partialGradient: Bool = false,
                shared: Bool = false, expert: Bool = false) {
        self.tensorParallel = tensorParallel
        self.partialGradient = partialGradient
        self.shared = shared
        self.expert = expert
    }
}

extension Module {
    /// Every parameter below this module with its dotted path and attributes, in `namedParameters` order.
    public func namedParameterAttributes(prefix: String = "") -> [(name: String, tensor: Tensor, attributes: ParameterAttributes)] {
        var result: [(name: String, tensor: Tensor, attributes: ParameterAttributes)] = []
        for (local, tensor) in parameters { result.append((prefix + local, tensor, attributes(ofParameter: local))) }
        for (name, child) in children { result += child.namedParameterAttributes(prefix: prefix + name + ".") }
        return result
    }
}
