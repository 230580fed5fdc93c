import MegatronAutograd
import MegatronTensor

/// Moving tokens to their experts and back (Megatron's `permute` / `unpermute` on one rank), differentiable.
enum TokenPermutation {
    /// The rows `rows [n]` (int64) of `x [T, hidden]`, in that order: `[n, hidden]`.
    static func select(_ x: Tensor, rows: Tensor) -> Tensor {
        let shape = x.shape
        return record("permuteTokens", inputs: [x], output: Ops.embedding(x.detached(), ids: rows)) { g in
            [Ops.indexAdd(Tensor.zeros(shape, dtype: g.dtype, device: g.device), dim: 0, index: rows, source: g)]
        }
    }

    /// `y [n, hidden]` summed into `tokens` rows at `rows [n]`: each token's expert outputs added up.
    static func combine(_ y: Tensor, rows: Tensor, tokens: Int) -> Tensor {
        let zeros = Tensor.zeros([tokens, y.size(1)], dtype: y.dtype, device: y.device)
        return record("unpermuteTokens", inputs: [y], output: Ops.indexAdd(zeros, dim: 0, index: rows, source: y.detached())) { g in
            [Ops.embedding(g, ids: rows)]
        }
    }

    /// `rows` as an int64 index tensor on `device`.
    static func index(_ rows: [Int], on device: Device) -> Tensor {
        Tensor(shape: [rows.count], ints: rows).to(device)
    }
}
