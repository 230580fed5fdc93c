extension Ops {
    /// Rows of `weight [V, H]` picked by integer `ids [...]`: the result is `[..., H]`.
    public static func embedding(_ weight: Tensor, ids: Tensor) -> Tensor {
        precondition(weight.rank == 2, "embedding weight must be [vocab, hidden], got \(weight.shape)")
        if cudaDevice(weight, ids, op: "embedding") != nil { return CUDAOps.embedding(weight, ids: ids) }
        let (v, h) = (weight.shape[0], weight.shape[1])
        let rows = ids.ints()
        return weight.withFloats { w in
            Tensor.computed(shape: ids.shape + [h], dtype: weight.dtype) { out in
                parallelRows(rows.count, h) { i in
                    let id = rows[i]
                    precondition(id >= 0 && id < v, "token id \(id) out of range for a vocabulary of \(v)")
                    (out.baseAddress! + i * h).update(from: w.baseAddress! + id * h, count: h)
                }
            }
        }
    }

    /// `x` with `source` slices added at `index` positions along `dim` (`index_add`): repeated indices accumulate,
    /// in a fixed order, so the result is deterministic.
    /// The gradient of an embedding table `[vocabulary, width]` from the gradient of its lookups,
    /// `gradient [tokens, width]` for `ids [tokens]`: row v sums the gradient rows of the tokens with
    /// id v, in `gradient`'s dtype. On the GPU the sums run in fp32, by atomics (order-dependent in
    /// the last bits) unless MEGATRON_DETERMINISTIC=1 picks the ordered kernel.
    public static func embeddingBackward(_ gradient: Tensor, ids: Tensor, vocabulary: Int) -> Tensor {
        precondition(gradient.rank == 2 && ids.rank == 1 && ids.count == gradient.shape[0],
                     "embedding backward: gradient \(gradient.shape) and ids \(ids.shape) disagree")
        if cudaDevice(gradient, ids, op: "embeddingBackward") != nil {
            return CUDAOps.embeddingBackward(gradient, ids: ids, vocabulary: vocabulary)
        }
        let zeros = Tensor.zeros([vocabulary, gradient.shape[1]], dtype: gradient.dtype)
        return indexAdd(zeros, dim: 0, index: ids, source: gradient)
    }

    public static func indexAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        precondition(index.rank == 1 && source.shape[d] == index.count,
                     "index_add: index \(index.shape) and source \(source.shape) disagree along dimension \(dim)")
        if cudaDevice(x, index, source, op: "indexAdd") != nil { return CUDAOps.indexAdd(x, dim: d, index: index, source: source) }
        let idx = index.ints()
        precondition(index.rank == 1 && source.shape[d] == idx.count,
                     "index_add: index \(index.shape) and source \(source.shape) disagree along dimension \(dim)")
        let outer = x.shape[..<d].reduce(1, *), inner = x.shape[(d + 1)...].reduce(1, *)
        let size = x.shape[d]
        return x.withFloats { xs in
            source.withFloats { ss in
                Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                    out.baseAddress!.update(from: xs.baseAddress!, count: xs.count)
                    for o in 0..<outer {
                        for (k, target) in idx.enumerated() {
                            precondition(target >= 0 && target < size, "index \(target) out of range for size \(size)")
                            let dst = out.baseAddress! + (o * size + target) * inner
                            let src = ss.baseAddress! + (o * idx.count + k) * inner
                            for j in 0..<inner { dst[j] += src[j] }
                        }
                    }
                }
            }
        }
    }

    /// `out[i][j]... = x[index[i][j]...]` along `dim` (`torch.gather`); `index` has `x`'s rank.
    public static func gather(_ x: Tensor, dim: Int, index: Tensor) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        if cudaDevice(x, index, op: "gather") != nil { return CUDAOps.gather(x, dim: d, index: index) }
        let xs = x.madeContiguous().floats(), idx = index.ints()
        let xStrides = Shape.contiguousStrides(x.shape), iStrides = Shape.contiguousStrides(index.shape)
        return Tensor.computed(shape: index.shape, dtype: x.dtype) { out in
            for flat in 0..<idx.count {
                var rem = flat, src = 0
                for k in 0..<index.rank {
                    let coord = rem / iStrides[k]
                    rem %= iStrides[k]
                    src += (k == d ? idx[flat] : coord) * xStrides[k]
                }
                out[flat] = xs[src]
            }
        }
    }

    /// `x` plus `source` scattered along `dim` at `index` (`torch.Tensor.scatter_add`).
    public static func scatterAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let d = Shape.normalize(dim, rank: x.rank)
        if cudaDevice(x, index, source, op: "scatterAdd") != nil {
            return CUDAOps.scatterAdd(x, dim: d, index: index, source: source)
        }
        let idx = index.ints(), src = source.madeContiguous().floats()
        let xStrides = Shape.contiguousStrides(x.shape), iStrides = Shape.contiguousStrides(index.shape)
        let sStrides = Shape.contiguousStrides(source.shape)
        return x.withFloats { xs in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                out.baseAddress!.update(from: xs.baseAddress!, count: xs.count)
                for flat in 0..<idx.count {
                    var rem = flat, dst = 0, s = 0
                    for k in 0..<index.rank {
                        let coord = rem / iStrides[k]
                        rem %= iStrides[k]
                        dst += (k == d ? idx[flat] : coord) * xStrides[k]
                        s += coord * sStrides[k]
                    }
                    out[dst] += src[s]
                }
            }
        }
    }

    /// Joins tensors of equal shape except along `dim`.
    public static func concat(_ tensors: [Tensor], dim: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concat of no tensors")
        let first = tensors[0]
        let d = Shape.normalize(dim, rank: first.rank)
        var shape = first.shape
        shape[d] = tensors.map { $0.shape[d] }.reduce(0, +)
        let dtype = tensors.map(\.dtype).reduce(first.dtype, resultType)
        let device = cudaDevice(tensors, op: "concat") ?? .cpu
        let out = Tensor.empty(shape, dtype: dtype, device: device)
        var start = 0
        for t in tensors {
            precondition(t.rank == first.rank, "concat of ranks \(first.rank) and \(t.rank)")
            copy(t, into: out.narrowed(d, start: start, length: t.shape[d]))
            start += t.shape[d]
        }
        return out
    }

    /// The `k` largest (or smallest) values along the last dimension and their int64 indices, sorted.
    public static func topk(_ x: Tensor, k: Int, largest: Bool = true) -> (values: Tensor, indices: Tensor) {
        let width = x.shape.last!, rows = x.count / width
        precondition(k >= 0 && k <= width, "topk k=\(k) out of range for size \(width)")
        if cudaDevice(x, op: "topk") != nil { return CUDAOps.topk(x, k: k, largest: largest) }
        var indices = [Int](repeating: 0, count: rows * k)
        var values = [Float](repeating: 0, count: rows * k)
        x.withFloats { xs in
            for row in 0..<rows {
                let s = xs.baseAddress! + row * width
                let order = (0..<width).sorted { a, b in
                    if s[a] != s[b] { return largest ? s[a] > s[b] : s[a] < s[b] }
                    return a < b
                }
                for j in 0..<k {
                    indices[row * k + j] = order[j]
                    values[row * k + j] = s[order[j]]
                }
            }
        }
        let shape = Array(x.shape.dropLast()) + [k]
        return (Tensor(shape: shape, values: values, dtype: x.dtype), Tensor(shape: shape, ints: indices))
    }
}
