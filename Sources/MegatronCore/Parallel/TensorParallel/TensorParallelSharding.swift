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
    /// The parameter is sections of the given whole `lengths` along `dim` (Gated DeltaNet's `in_proj`: q, k, v,
    /// z, beta, alpha), each split into `size` blocks; rank r holds its block of every section, in order.
    case splitSections(dim: Int, lengths: [Int])

    public var description: String {
        switch self {
        case .duplicated: "duplicated"
        case .split(let dim): "split along dim \(dim)"
        case .splitHalves(let dim): "split per half along dim \(dim)"
        case .splitSections(let dim, let lengths): "split per section \(lengths) along dim \(dim)"
        }
    }

    /// Rank `rank`'s part of the full parameter `full` (a contiguous copy).
    public func shard(_ full: Tensor, rank: Int, size: Int) throws -> Tensor {
        switch self {
        case .duplicated:
            return freshCopy(full)
        case .split(let dim):
            return freshCopy(try Self.block(full, dim: dim, index: rank, count: size))
        case .splitHalves, .splitSections:
            let (dim, lengths) = try sectioning(full)
            let parts = try Self.sections(full, dim: dim, lengths: lengths).map { try Self.block($0, dim: dim, index: rank, count: size) }
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
        case .splitHalves, .splitSections:
            let (dim, lengths) = try localSectioning(first, size: shards.count)
            let parts = try shards.map { try Self.sections($0, dim: dim, lengths: lengths) }
            return Ops.concat(lengths.indices.flatMap { section in parts.map { $0[section] } }, dim: dim)
        }
    }

    /// The dim and section lengths of a sectioned parameter `full` (halves: two equal ones).
    private func sectioning(_ full: Tensor) throws -> (dim: Int, lengths: [Int]) {
        switch self {
        case .splitHalves(let dim):
            guard dim < full.rank, full.size(dim) % 2 == 0 else {
                throw ConfigError("a parameter of shape \(full.shape) does not split into halves along dim \(dim)")
            }
            return (dim, [full.size(dim) / 2, full.size(dim) / 2])
        case .splitSections(let dim, let lengths): return (dim, lengths)
        case .duplicated, .split: preconditionFailure("\(self) has no sections")
        }
    }

    /// The dim and section lengths of one rank's part `local` of a sectioned parameter split over `size` ranks.
    func localSectioning(_ local: Tensor, size: Int) throws -> (dim: Int, lengths: [Int]) {
        if case .splitSections(let dim, let lengths) = self {
            guard lengths.allSatisfy({ $0 % size == 0 }) else {
                throw ConfigError("sections \(lengths) do not split into \(size) equal blocks each")
            }
            return (dim, lengths.map { $0 / size })
        }
        return try sectioning(local)
    }

    /// `t` cut along `dim` into consecutive sections of `lengths`.
    static func sections(_ t: Tensor, dim: Int, lengths: [Int]) throws -> [Tensor] {
        guard dim < t.rank, lengths.reduce(0, +) == t.size(dim), lengths.allSatisfy({ $0 >= 0 }) else {
            throw ConfigError("a parameter of shape \(t.shape) does not hold sections \(lengths) along dim \(dim)")
        }
        var start = 0
        return lengths.map { length in
            defer { start += length }
            return t.narrowed(dim, start: start, length: length)
        }
    }

    private static func block(_ t: Tensor, dim: Int, index: Int, count: Int) throws -> Tensor {
        guard dim < t.rank, t.size(dim) % count == 0 else {
            throw ConfigError("a parameter of shape \(t.shape) does not split into \(count) equal blocks along dim \(dim)")
        }
        let length = t.size(dim) / count
        return t.narrowed(dim, start: index * length, length: length)
    }
}
