import MegatronTensor

extension Module {
    /// How every parameter below this module is laid out over a tensor-parallel group, by path, as the
    /// modules that created them marked them (`ParameterAttributes.tensorParallel`). The layout does not
    /// depend on the group size, so a single-rank model describes how to split its own weights.
    ///
    /// ```swift
    /// model.tensorParallelShardings()["decoder.layers.0.mlp.linear_fc2.weight"]   // .split(dim: 1)
    /// ```
    public func tensorParallelShardings() -> [String: TensorParallelSharding] {
        Dictionary(namedParameterAttributes().map { ($0.name, $0.attributes.tensorParallel) }, uniquingKeysWith: { first, _ in first })
    }

    /// Paths of the parameters every rank holds whole: gradient-norm and other statistics over the group
    /// count them once (`GradientStatsGroups.duplicatedParameters`).
    public func tensorParallelDuplicatedParameters() -> Set<String> {
        Set(namedParameterAttributes().filter { $0.attributes.tensorParallel == .duplicated }.map(\.name))
    }

    /// Parameters every rank holds whole but whose gradient each rank computes only in part, so it must be
    /// summed over the tensor-parallel group after backward (`ParameterAttributes.partialGradient`, Megatron's
    /// `sequence_parallel` attribute and the layer-norm step of `finalize_model_grads`). None on a model
    /// built for a single rank.
    public func parametersWithPartialGradients() -> [(String, Tensor)] {
        namedParameterAttributes().filter(\.attributes.partialGradient).map { ($0.name, $0.tensor) }
    }
}

/// The gradient step tensor parallelism adds after backward.
public enum TensorParallelGradients {
    /// Sums over `group`, the group `model` was built for, the gradients of `model.parametersWithPartialGradients()`,
    /// in place, so every rank's copy of those parameters takes the same optimizer step. Call after backward
    /// on every rank.
    ///
    /// ```swift
    /// loss.backward()
    /// TensorParallelGradients.allReducePartial(model, group: tp)
    /// optimizer.step(...)
    /// ```
    public static func allReducePartial(_ model: Module, group: TensorParallelGroup) {
        guard let comm = TensorParallelMappings.multiRank(group) else { return }
        for (_, parameter) in model.parametersWithPartialGradients() {
            guard let grad = parameter.grad else { continue }
            Ops.copy(comm.allReduced(grad), into: grad)
        }
    }
}
