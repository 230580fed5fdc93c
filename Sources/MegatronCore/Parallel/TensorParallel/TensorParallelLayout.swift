import MegatronTensor

/// A module whose parameters are split over a tensor-parallel group; modules that are not hold every
/// parameter whole (`.duplicated`).
public protocol TensorParallelLayer: AnyObject {
    /// How the parameter this module lists as `name` is laid out.
    func sharding(ofParameter name: String) -> TensorParallelSharding
}

extension ColumnParallelLinear: TensorParallelLayer {
    /// The weight's rows and the bias follow the output features.
    public func sharding(ofParameter name: String) -> TensorParallelSharding { sharding }
}

extension RowParallelLinear: TensorParallelLayer {
    /// The weight's columns are split; the bias, added after the sum, is whole.
    public func sharding(ofParameter name: String) -> TensorParallelSharding {
        name == "weight" ? .split(dim: 1) : .duplicated
    }
}

extension VocabParallelEmbedding: TensorParallelLayer {
    public func sharding(ofParameter name: String) -> TensorParallelSharding { .split(dim: 0) }
}

extension Module {
    /// How every parameter below this module is laid out over a tensor-parallel group, by path. The layout
    /// does not depend on the group size, so a single-rank model describes how to split its own weights.
    ///
    /// ```swift
    /// model.tensorParallelShardings()["decoder.layers.0.mlp.linear_fc2.weight"]   // .split(dim: 1)
    /// ```
    public func tensorParallelShardings() -> [String: TensorParallelSharding] {
        var result: [String: TensorParallelSharding] = [:]
        visitParameters { module, _, local, path, _ in
            result[path] = (module as? TensorParallelLayer)?.sharding(ofParameter: local) ?? .duplicated
        }
        return result
    }

    /// Paths of the parameters every rank holds whole: gradient-norm and other statistics over the group
    /// count them once (`GradientStatsGroups.duplicatedParameters`).
    public func tensorParallelDuplicatedParameters() -> Set<String> {
        Set(tensorParallelShardings().filter { $0.value == .duplicated }.keys)
    }

    /// Parameters every rank holds whole but whose gradient each rank computes only in part, so it must be
    /// summed over `group` after backward (Megatron's `sequence_parallel` parameter attribute and the
    /// layer-norm step of `finalize_model_grads`):
    /// - under sequence parallelism, the weights and biases of every norm and the biases of row-parallel
    ///   layers, which see only this rank's positions;
    /// - with more than one rank, the per-head norms (query and key norms, Gated DeltaNet's `out_norm`), which
    ///   see only this rank's heads.
    public func parametersWithPartialGradients(_ group: TensorParallelGroup) -> [(String, Tensor)] {
        guard group.size > 1 else { return [] }
        var result: [(String, Tensor)] = []
        visitParameters { module, childName, local, path, tensor in
            let isNorm = module is NormLayer
            let perHeadNorm = isNorm && ["q_layernorm", "k_layernorm", "out_norm"].contains(childName)
            let rowParallelBias = module is RowParallelLinear && local == "bias"
            if perHeadNorm || (group.sequenceParallel && (isNorm || rowParallelBias)) { result.append((path, tensor)) }
        }
        return result
    }

    /// Calls `body(module, module's name in its parent, parameter's local name, path, tensor)` for every
    /// parameter below this module, in `namedParameters` order.
    func visitParameters(prefix: String = "", name: String = "",
                         _ body: (Module, String, String, String, Tensor) -> Void) {
        for (local, tensor) in parameters { body(self, name, local, prefix + local, tensor) }
        for (childName, child) in children {
            child.visitParameters(prefix: prefix + childName + ".", name: childName, body)
        }
    }
}

/// The gradient step tensor parallelism adds after backward.
public enum TensorParallelGradients {
    /// Sums over the group the gradients of `model.parametersWithPartialGradients(group)`, in place, so every
    /// rank's copy of those parameters takes the same optimizer step. Call after backward on every rank.
    ///
    /// ```swift
    /// loss.backward()
    /// TensorParallelGradients.allReducePartial(model, group: tp)
    /// optimizer.step(...)
    /// ```
    public static func allReducePartial(_ model: Module, group: TensorParallelGroup) {
        guard let comm = TensorParallelMappings.multiRank(group) else { return }
        for (_, parameter) in model.parametersWithPartialGradients(group) {
            guard let grad = parameter.grad else { continue }
            Ops.copy(comm.allReduced(grad), into: grad)
        }
    }
}
