import MegatronTensor

/// How one parameter is laid out over a tensor-parallel group (Megatron's `partition_dim` per parameter).
public enum TensorParallelSharding: Equatable, Sendable, CustomStringConvertible {
    /// Every rank holds the whole parameter (norms, row-parallel biases, position embeddings).
    case duplicated
    /// Rank r holds the r-th of `size` equal contiguous blocks along `dim` (column-parallel weights split
    /// their rows, dim 0; row-parallel weights their columns, dim 1; the vocabulary its rows).
    case split(dim: Int)
    /// The parameter is two halves along `dim` (SwiGLU's gate and up projections in `linear_fc1`), each split
    /// into `size` blocks; rank r holds its gate block followed by its up block, so that its local
    /// activation sees matching gate and up channels.
    case splitHalves(dim: Int)

    public var description: String {
        switch self {
        case .duplicated: "duplicated"
        case .split(let dim): "split along dim \(dim)"
        case .splitHalves(let dim): "split per half along dim \(dim)"
        }
    }

    /// Rank `rank`'s part of the full parameter `full` (a contiguous copy).
    public func shard(_ full: Tensor, rank: Int, size: Int) throws -> Tensor {
        switch self {
        case .duplicated:
            return freshCopy(full)
        case .split(let dim):
            return freshCopy(try Self.block(full, dim: dim, index: rank, count: size))
        case .splitHalves(let dim):
            let halves = try Self.halves(full, dim: dim)
            let parts = try halves.map { try Self.block($0, dim: dim, index: rank, count: size) }
            return Ops.concat(parts, dim: dim)
        }
    }

    /// The full parameter from every rank's part, in rank order (the inverse of `shard`).
    public func merge(_ shards: [Tensor]) throws -> Tensor {
        guard let first = shards.first else { throw ConfigError("merging a parameter needs at least one shard") }
        guard shards.allSatisfy({ $0.shape == first.shape }) else {
            throw ConfigError("tensor-parallel shards of one parameter differ in shape: \(shards.map(\.shape))")
        }
        switch self {
        case .duplicated:
            return freshCopy(first)
        case .split(let dim):
            return Ops.concat(shards, dim: dim)
        case .splitHalves(let dim):
            let halves = try shards.map { try Self.halves($0, dim: dim) }
            return Ops.concat(halves.map { $0[0] } + halves.map { $0[1] }, dim: dim)
        }
    }

    private static func block(_ t: Tensor, dim: Int, index: Int, count: Int) throws -> Tensor {
        guard dim < t.rank, t.size(dim) % count == 0 else {
            throw ConfigError("a parameter of shape \(t.shape) does not split into \(count) equal blocks along dim \(dim)")
        }
        let length = t.size(dim) / count
        return t.narrowed(dim, start: index * length, length: length)
    }

    private static func halves(_ t: Tensor, dim: Int) throws -> [Tensor] {
        [try block(t, dim: dim, index: 0, count: 2), try block(t, dim: dim, index: 1, count: 2)]
    }
}
