import MegatronTensor

/// Splits a whole (single-rank) state dict into tensor-parallel shards and merges shards back, by each
/// parameter's `TensorParallelSharding` (fused QKV rows split by whole query groups, SwiGLU `linear_fc1`
/// per half, the vocabulary by rows). Checkpoints and Hugging Face import and export go through the
/// single-rank layout and these two steps.
///
/// ```swift
/// let shardings = model.tensorParallelShardings()
/// let shards = try TensorParallelResharding.split(model.stateDict(), shardings: shardings, size: 4)
/// let whole = try TensorParallelResharding.merge(shards, shardings: shardings)
/// ```
public enum TensorParallelResharding {
    /// Rank `rank`'s state dict out of the whole `state`.
    public static func shard(_ state: [String: Tensor], shardings: [String: TensorParallelSharding],
                             rank: Int, size: Int) throws -> [String: Tensor] {
        guard size > 0, (0..<size).contains(rank) else {
            throw ConfigError("tensor-parallel rank \(rank) is outside a group of size \(size)")
        }
        var result: [String: Tensor] = [:]
        for (name, tensor) in state {
            let layout = try sharding(of: name, shardings)
            do {
                result[name] = try layout.shard(tensor, rank: rank, size: size)
            } catch let error as ConfigError {
                throw ConfigError("\(name): \(error.description)")
            }
        }
        return result
    }

    /// Every rank's state dict, in rank order.
    public static func split(_ state: [String: Tensor], shardings: [String: TensorParallelSharding],
                             size: Int) throws -> [[String: Tensor]] {
        try (0..<size).map { try shard(state, shardings: shardings, rank: $0, size: size) }
    }

    /// The whole state dict from every rank's state dict, in rank order. All ranks must hold the same keys.
    public static func merge(_ shards: [[String: Tensor]],
                             shardings: [String: TensorParallelSharding]) throws -> [String: Tensor] {
        guard let first = shards.first else { throw ConfigError("merging needs at least one tensor-parallel shard") }
        var result: [String: Tensor] = [:]
        for name in first.keys.sorted() {
            let parts = try shards.enumerated().map { rank, shard in
                guard let t = shard[name] else { throw ConfigError("tensor-parallel rank \(rank) has no '\(name)'") }
                return t
            }
            let layout = try sharding(of: name, shardings)
            do {
                result[name] = try layout.merge(parts)
            } catch let error as ConfigError {
                throw ConfigError("\(name): \(error.description)")
            }
        }
        return result
    }

    /// Layouts of optimizer state keyed `<role>.<parameter path>` (`MixedPrecisionOptimizer.stateTensors`:
    /// `master.<param>`, `state0.<param>`, ...): each buffer is laid out as its parameter.
    public static func optimizerStateShardings(keys: some Sequence<String>,
                                               parameterShardings: [String: TensorParallelSharding]) throws
        -> [String: TensorParallelSharding] {
        var result: [String: TensorParallelSharding] = [:]
        for key in keys {
            guard let dot = key.firstIndex(of: "."), let s = parameterShardings[String(key[key.index(after: dot)...])] else {
                throw ConfigError("optimizer state '\(key)' names no parameter with a known tensor-parallel layout")
            }
            result[key] = s
        }
        return result
    }

    /// The whole state dict of a model split over `group`, on every rank: each split parameter is
    /// all-gathered along its dimension (a collective: every rank of the group calls it). A checkpoint saved
    /// from it is the single-rank layout, which loads at any group size through `shard`.
    ///
    /// ```swift
    /// let whole = TensorParallelResharding.gather(model, group: tp)
    /// if tp.rank == 0 { try save(whole) }
    /// ```
    public static func gather(_ module: Module, group: TensorParallelGroup) -> [String: Tensor] {
        let shardings = module.tensorParallelShardings()
        var result: [String: Tensor] = [:]
        for (name, parameter) in module.namedParameters() {
            let local = parameter.detached()
            guard let comm = TensorParallelMappings.multiRank(group) else {
                result[name] = freshCopy(local)
                continue
            }
            switch shardings[name] ?? .duplicated {
            case .duplicated:
                result[name] = freshCopy(local)
            case .split(let dim):
                result[name] = comm.allGathered(local, dim: dim)
            case let sectioned:
                let (dim, lengths) = try! sectioned.localSectioning(local, size: comm.size)
                let sections = try! TensorParallelSharding.sections(local, dim: dim, lengths: lengths)
                result[name] = Ops.concat(sections.map { comm.allGathered($0, dim: dim) }, dim: dim)
            }
        }
        return result
    }

    private static func sharding(of name: String, _ shardings: [String: TensorParallelSharding]) throws -> TensorParallelSharding {
        guard let s = shardings[name] else { throw ConfigError("no tensor-parallel layout is known for '\(name)'") }
        return s
    }
}
