/// The operands of one scaled-dot-product attention, seen in the grouped layout every attention
/// kernel works in: queries `[batch, groups, perGroup, queries, headDim]`, keys and values
/// `[batch, groups, keys, headDim]` (query head `h` reads key/value head `h / perGroup`).
///
/// Callers may pass queries as `[b, heads, s, d]` (heads = groups * perGroup) or already grouped as
/// `[b, groups, perGroup, s, d]`, and keys/values as `[b, groups, t, d]` or `[b, groups, 1, t, d]`,
/// with any strides: the model slices them out of its fused QKV projection without copying.
///
/// The attention output is laid out in memory as `[b, s, heads, d]` (what the output projection
/// reads next) and presented in the queries' logical shape, so `permute` + `reshape` to
/// `[b, s, heads * d]` is a free view.
public struct AttentionLayout: Equatable, Sendable {
    public var batch: Int
    public var groups: Int
    public var perGroup: Int
    public var queries: Int
    public var keys: Int
    public var headDim: Int
    /// The rank of the caller's query tensor (4 or 5); outputs and query gradients take it.
    public var queryRank: Int

    public var heads: Int { groups * perGroup }
    /// Query row `i` sits at key position `i + causalOffset`: the last `queries` of `keys` positions.
    public var causalOffset: Int { keys - queries }

    /// Validates the shapes of `q`, `k`, `v` and `gradient`-free operands; traps with a message naming the
    /// problem (mismatched batch, heads not a multiple of key/value heads, differing head dims, ...).
    public init(q: Tensor, k: Tensor, v: Tensor) {
        precondition(q.rank == 4 || q.rank == 5, "attention wants q [b, heads, s, d] or [b, groups, perGroup, s, d], got \(q.shape)")
        let kv = Self.grouped(k, name: "k"), vv = Self.grouped(v, name: "v")
        precondition(kv.shape == vv.shape, "attention: k \(k.shape) and v \(v.shape) differ")
        let (b, groups, t, d) = (kv.shape[0], kv.shape[1], kv.shape[3], kv.shape[4])
        precondition(q.shape.last == d, "attention: q head dim \(q.shape.last!) differs from k/v head dim \(d)")
        precondition(q.shape[0] == b, "attention: q batch \(q.shape[0]) differs from k/v batch \(b)")
        if q.rank == 4 {
            precondition(q.shape[1] % groups == 0, "attention: \(q.shape[1]) query heads are not a multiple of \(groups) key/value heads")
        } else {
            precondition(q.shape[1] == groups, "attention: q has \(q.shape[1]) groups, k/v have \(groups)")
        }
        let perGroup = q.rank == 4 ? q.shape[1] / groups : q.shape[2]
        let s = q.shape[q.rank - 2]
        precondition(s <= t, "attention: \(s) queries attend to only \(t) keys (queries must be the last keys' positions)")
        precondition(d > 0 && s > 0 && b > 0 && perGroup > 0, "attention: empty operand (q \(q.shape), k \(k.shape))")
        self.init(batch: b, groups: groups, perGroup: perGroup, queries: s, keys: t, headDim: d, queryRank: q.rank)
    }

    public init(batch: Int, groups: Int, perGroup: Int, queries: Int, keys: Int, headDim: Int, queryRank: Int = 4) {
        (self.batch, self.groups, self.perGroup, self.queries, self.keys, self.headDim, self.queryRank) =
            (batch, groups, perGroup, queries, keys, headDim, queryRank)
    }

    /// `q` as a `[b, groups, perGroup, s, d]` view (no copy).
    public func groupedQueries(_ q: Tensor) -> Tensor {
        if q.rank == 5 { return q }
        let (sb, sh, ss, sd) = (q.strides[0], q.strides[1], q.strides[2], q.strides[3])
        return Tensor(storage: q.storage, shape: [batch, groups, perGroup, queries, headDim],
                      strides: [sb, perGroup * sh, sh, ss, sd], offset: q.offset, dtype: q.dtype)
    }

    /// `k` or `v` as a `[b, groups, t, d]` view (no copy).
    public static func groupedKeys(_ x: Tensor) -> Tensor {
        let g = grouped(x, name: "k/v")
        return g.squeezed(2)
    }

    private static func grouped(_ x: Tensor, name: String) -> Tensor {
        if x.rank == 4 { return x.unsqueezed(2) }
        precondition(x.rank == 5 && x.shape[2] == 1, "attention wants \(name) [b, kvHeads, t, d] or [b, kvHeads, 1, t, d], got \(x.shape)")
        return x
    }

    /// The queries' logical shape (4-D or 5-D as the caller gave them).
    public var queryShape: [Int] {
        queryRank == 4 ? [batch, heads, queries, headDim] : [batch, groups, perGroup, queries, headDim]
    }

    /// The row log-sum-exp's shape: one fp32 per query row and head.
    public var logSumExpShape: [Int] { [batch, heads, queries] }

    /// A contiguous `[b, s, heads, d]` tensor presented in the queries' logical shape.
    public func outputView(of bshd: Tensor) -> Tensor {
        precondition(bshd.shape == [batch, queries, heads, headDim] && bshd.isContiguous, "attention output must be contiguous [b, s, heads, d]")
        let (sb, ss, sh) = (queries * heads * headDim, heads * headDim, headDim)
        let shape = queryShape
        let strides = queryRank == 4 ? [sb, sh, ss, 1] : [sb, perGroup * sh, sh, ss, 1]
        return Tensor(storage: bshd.storage, shape: shape, strides: strides, offset: bshd.offset, dtype: bshd.dtype)
    }

    /// Floating-point operations of the forward pass (two matrix products), halved under a causal
    /// mask as FlashAttention counts them; the backward is 2.5 times this.
    public func forwardFlops(causal: Bool) -> Double {
        let full = 4.0 * Double(batch * heads) * Double(queries) * Double(keys) * Double(headDim)
        return causal ? full / 2 : full
    }
}
