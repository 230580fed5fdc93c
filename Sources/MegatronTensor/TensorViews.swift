/// Raw views: new shapes and strides over the same storage, no data copied (except `contiguous` and
/// `reshaped` of a non-contiguous tensor, which must copy).
///
/// These record no autograd graph. Differentiable code uses MegatronAutograd's `reshape`, `transpose`,
/// `permute`, `narrow`, `expand`, `unsqueeze` and `squeeze`. A raw view's result carries no autograd state.
extension Tensor {

    /// The same data with a new shape; `-1` in one place is inferred. Copies only when not contiguous.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let resolved = Shape.resolve(newShape, count: count)
        let base = isContiguous ? self : madeContiguous()
        return Tensor(storage: base.storage, shape: resolved, strides: Shape.contiguousStrides(resolved),
                      offset: base.offset, dtype: dtype)
    }

    /// Swaps two dimensions.
    public func transposed(_ d0: Int, _ d1: Int) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(Shape.normalize(d0, rank: rank), Shape.normalize(d1, rank: rank))
        return permuted(order)
    }

    /// Reorders dimensions: result dimension i is this tensor's dimension `order[i]`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permutation \(order) is not one of 0..<\(rank)")
        return Tensor(storage: storage, shape: order.map { shape[$0] }, strides: order.map { strides[$0] },
                      offset: offset, dtype: dtype)
    }

    /// Elements `start..<start+length` along `dim`.
    public func narrowed(_ dim: Int, start: Int, length: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: rank)
        precondition(start >= 0 && length >= 0 && start + length <= shape[d],
                     "narrow \(start)..<\(start + length) out of range for size \(shape[d]) of dimension \(dim)")
        var newShape = shape
        newShape[d] = length
        return Tensor(storage: storage, shape: newShape, strides: strides, offset: offset + start * strides[d],
                      dtype: dtype)
    }

    /// Index `index` of dimension `dim`, removing that dimension.
    public func selected(_ dim: Int, _ index: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: rank)
        return narrowed(d, start: index, length: 1).squeezed(d)
    }

    /// Broadcasts size-1 dimensions (and new leading ones) to `target` with zero strides.
    public func expanded(to target: [Int]) -> Tensor {
        precondition(target.count >= rank, "cannot expand \(shape) to fewer dimensions \(target)")
        let lead = target.count - rank
        var newStrides = [Int](repeating: 0, count: target.count)
        for i in 0..<rank {
            if shape[i] == target[lead + i] {
                newStrides[lead + i] = strides[i]
            } else {
                precondition(shape[i] == 1, "cannot expand \(shape) to \(target)")
            }
        }
        return Tensor(storage: storage, shape: target, strides: newStrides, offset: offset, dtype: dtype)
    }

    public func unsqueezed(_ dim: Int) -> Tensor {
        let d = dim < 0 ? dim + rank + 1 : dim
        var s = shape, st = strides
        s.insert(1, at: d)
        st.insert(d < rank ? strides[d] * shape[d] : 1, at: d)
        return Tensor(storage: storage, shape: s, strides: st, offset: offset, dtype: dtype)
    }

    public func squeezed(_ dim: Int) -> Tensor {
        let d = Shape.normalize(dim, rank: rank)
        precondition(shape[d] == 1, "cannot squeeze dimension \(dim) of size \(shape[d])")
        var s = shape, st = strides
        s.remove(at: d)
        st.remove(at: d)
        return Tensor(storage: storage, shape: s, strides: st, offset: offset, dtype: dtype)
    }

    /// This tensor, or a row-major copy of it when its layout is not row-major.
    ///
    /// Not recorded by autograd: the copy is detached from whatever made `self`. On a tensor that needs
    /// gradients use MegatronAutograd's `contiguous()`, which passes the gradient through.
    public func madeContiguous() -> Tensor {
        if isContiguous { return self }
        if device != .cpu { return CUDAOps.contiguousCopy(self, dtype: dtype) }
        let out = Tensor(zeros: shape, dtype: dtype, device: device)
        StridedCopy.copy(from: self, to: out)
        return out
    }
}

extension Shape {
    /// Fills in a single `-1` of `shape` so that it holds `count` elements.
    static func resolve(_ shape: [Int], count: Int) -> [Int] {
        let known = shape.filter { $0 != -1 }.reduce(1, *)
        let inferred = shape.filter { $0 == -1 }.count
        precondition(inferred <= 1, "at most one -1 in shape \(shape)")
        if inferred == 1 {
            precondition(known > 0 && count % known == 0, "shape \(shape) is invalid for \(count) elements")
            return shape.map { $0 == -1 ? count / known : $0 }
        }
        precondition(known == count, "shape \(shape) is invalid for \(count) elements")
        return shape
    }
}
