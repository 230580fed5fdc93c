import MegatronTensor

/// Differentiable views and joins.
extension Tensor {
    /// The same elements in a new shape (one `-1` is inferred).
    public func reshape(_ newShape: [Int]) -> Tensor {
        let old = shape
        return record("reshape", inputs: [self], output: detached().reshaped(newShape)) { g in [g.reshaped(old)] }
    }

    /// This tensor, or a row-major copy of it when its layout is not row-major; the gradient passes through
    /// unchanged (it has the input's shape, in whatever layout it arrives).
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        return record("contiguous", inputs: [self], output: detached().madeContiguous()) { g in [g] }
    }

    public func transpose(_ d0: Int, _ d1: Int) -> Tensor {
        record("transpose", inputs: [self], output: detached().transposed(d0, d1)) { g in [g.transposed(d0, d1)] }
    }

    public func permute(_ order: [Int]) -> Tensor {
        var inverse = order
        for (i, o) in order.enumerated() { inverse[o] = i }
        return record("permute", inputs: [self], output: detached().permuted(order)) { g in [g.permuted(inverse)] }
    }

    /// Elements `start..<start+length` along `dim`.
    public func narrow(_ dim: Int, start: Int, length: Int) -> Tensor {
        let (fullShape, type) = (shape, dtype)
        return record("narrow", inputs: [self], output: detached().narrowed(dim, start: start, length: length)) { g in
            let full = Tensor.zeros(fullShape, dtype: type, device: g.device)
            Ops.copy(g, into: full.narrowed(dim, start: start, length: length))
            return [full]
        }
    }

    public func expand(to target: [Int]) -> Tensor {
        let old = shape
        return record("expand", inputs: [self], output: detached().expanded(to: target)) { g in [Ops.sumToShape(g, old)] }
    }

    public func unsqueeze(_ dim: Int) -> Tensor {
        let old = shape
        return record("unsqueeze", inputs: [self], output: detached().unsqueezed(dim)) { g in [g.reshaped(old)] }
    }

    public func squeeze(_ dim: Int) -> Tensor {
        let old = shape
        return record("squeeze", inputs: [self], output: detached().squeezed(dim)) { g in [g.reshaped(old)] }
    }

    /// Splits along `dim` into pieces of the given sizes (views). One node: backward writes each
    /// piece's gradient into its slice of one buffer (a fused QKV projection gets its gradient without
    /// padding each piece to the full size and summing).
    public func split(_ sizes: [Int], dim: Int) -> [Tensor] {
        // Backward indexes strides by `dim`: a negative one (counted from the end) is made positive once here.
        let dim = dim < 0 ? dim + rank : dim
        precondition(sizes.reduce(0, +) == size(dim), "split sizes \(sizes) do not add up to \(size(dim))")
        let starts = sizes.indices.map { sizes[..<$0].reduce(0, +) }
        let base = detached()
        let pieces = sizes.indices.map { base.narrowed(dim, start: starts[$0], length: sizes[$0]) }
        let (fullShape, type) = (shape, dtype)
        return record("split", inputs: [self], outputs: pieces) { gradients in
            if let full = Self.tiledBy(gradients, fullShape: fullShape, dim: dim, starts: starts) { return [full] }
            let full = Tensor.empty(fullShape, dtype: type, device: gradients[0].device)
            for (i, g) in gradients.enumerated() {
                Ops.copy(g, into: full.narrowed(dim, start: starts[i], length: sizes[i]))
            }
            return [full]
        }
    }

    /// The one tensor of `fullShape` whose slices along `dim` at `starts` are exactly `pieces` (same
    /// storage, the pieces' strides, consecutive offsets), or nil. Flash attention writes the gradients
    /// of q, k and v that way into one buffer, so the fused projection's gradient needs no copy.
    static func tiledBy(_ pieces: [Tensor], fullShape: [Int], dim: Int, starts: [Int]) -> Tensor? {
        let first = pieces[0]
        let full = Tensor(storage: first.storage, shape: fullShape, strides: first.strides, offset: first.offset, dtype: first.dtype)
        for (piece, start) in zip(pieces, starts) {
            guard piece.storage === first.storage, piece.dtype == first.dtype, piece.strides == first.strides,
                  piece.offset == first.offset + start * first.strides[dim] else { return nil }
        }
        return full
    }

    /// Splits along `dim` into `count` equal pieces.
    public func chunk(_ count: Int, dim: Int) -> [Tensor] {
        precondition(size(dim) % count == 0, "size \(size(dim)) of dimension \(dim) does not split into \(count) chunks")
        return split(Array(repeating: size(dim) / count, count: count), dim: dim)
    }
}

/// Joins tensors along an existing dimension.
public func concat(_ tensors: [Tensor], dim: Int) -> Tensor {
    let d = dim < 0 ? dim + tensors[0].rank : dim
    let sizes = tensors.map { $0.shape[d] }
    return record("concat", inputs: tensors, output: Ops.concat(tensors.map { $0.detached() }, dim: d)) { g in
        var start = 0
        return sizes.map { length in
            defer { start += length }
            return g.narrowed(d, start: start, length: length)
        }
    }
}

/// Joins tensors of one shape along a new dimension.
public func stack(_ tensors: [Tensor], dim: Int) -> Tensor {
    concat(tensors.map { $0.unsqueeze(dim) }, dim: dim)
}
