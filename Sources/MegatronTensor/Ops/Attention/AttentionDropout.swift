/// Dropout on the attention probabilities, applied inside fused attention (the `[s, t]` probabilities
/// are never stored): `O = (P ∘ M / (1 - p)) V` with `P = softmax(scale · q kᵀ + mask)` and the keep
/// mask `M`; the row log-sum-exp stays that of the undropped scores.
///
/// The mask numbers the probabilities `[batch, heads, queries, keys]` row-major: element
/// `(b, h, i, j)` has index `((b · heads + h) · queries + i) · keys + j` (query head `h` of key/value
/// group `h / perGroup`), and is kept iff the uniform number of that index in the Philox draw
/// (`seed`, `offset`) is at least `probability`, the numbering of `Philox.fillUniform` (word
/// `index % 4` of the block `index / 4`). That is exactly the mask `Ops.dropout(probabilities, p:,
/// seed:, offset:)` draws on the contiguous materialized probabilities, so the fused and the
/// materialized paths drop the same elements; our CUDA kernels compute the same bits.
///
///     let dropout = AttentionDropout(probability: 0.1, seed: generator.seed, offset: generator.nextOffset())
///     let (o, lse) = Ops.attention(q: q, k: k, v: v, causal: true, scale: 0.125, dropout: dropout)
public struct AttentionDropout: Sendable, Equatable {
    public let probability: Float
    let mask: Mask

    enum Mask: Sendable, Equatable {
        /// Drawn from Philox as the type's documentation says.
        case philox(seed: UInt64, offset: UInt64)
        /// Given element by element in the numbering above (true: kept).
        case given([Bool])
    }

    /// Dropout with the mask of the Philox draw (`seed`, `offset`).
    public init(probability: Float, seed: UInt64, offset: UInt64) {
        precondition(probability >= 0 && probability < 1, "attention dropout probability \(probability) outside [0, 1)")
        self.probability = probability
        mask = .philox(seed: seed, offset: offset)
    }

    /// Dropout with a fixed mask, `[batch, heads, queries, keys]` row-major (true: kept). The fused
    /// kernels do not take it (CUDA tensors run `ComposedAttention`, the mask uploaded): tests use it to check a
    /// backend whose random numbers are its own against the mask it drew.
    public init(probability: Float, keeping mask: [Bool]) {
        precondition(probability >= 0 && probability < 1, "attention dropout probability \(probability) outside [0, 1)")
        self.probability = probability
        self.mask = .given(mask)
    }

    /// What kept probabilities are multiplied by: `1 / (1 - probability)` in fp32, as `Ops.dropout`.
    public var scale: Float { 1 / (1 - probability) }

    /// The Philox draw of the mask, nil for a given mask.
    public var philox: (seed: UInt64, offset: UInt64)? {
        guard case .philox(let seed, let offset) = mask else { return nil }
        return (seed, offset)
    }

    /// Whether the probability of index `index` (numbered as the type's documentation says) is kept.
    public func keeps(_ index: Int) -> Bool {
        switch mask {
        case .given(let kept):
            return kept[index]
        case .philox(let seed, let offset):
            let r = Philox.block(seed: seed, offset: offset, index: UInt64(index / 4))
            let bits: UInt32
            switch index % 4 {
            case 0: bits = r.0
            case 1: bits = r.1
            case 2: bits = r.2
            default: bits = r.3
            }
            return Philox.unit(bits) >= probability
        }
    }
}
