import MegatronTensor

/// Differentiable reductions.
extension Tensor {
    /// Sum over `dims` (all when empty).
    public func sum(dims: [Int] = [], keepDim: Bool = false) -> Tensor {
        reduce(dims: dims, keepDim: keepDim, .sum)
    }

    /// Mean over `dims` (all when empty).
    public func mean(dims: [Int] = [], keepDim: Bool = false) -> Tensor {
        reduce(dims: dims, keepDim: keepDim, .mean)
    }

    /// Largest value along `dim`; the gradient goes to the first position holding it.
    public func max(dim: Int, keepDim: Bool = false) -> Tensor {
        let x = detached()
        let index = Ops.argmax(x, dim: dim, keepDim: true)
        let values = Ops.gather(x, dim: dim, index: index)
        let out = keepDim ? values : values.squeezed(dim)
        return record("max", inputs: [self], output: out) { g in
            let g = keepDim ? g : g.unsqueezed(dim)
            return [Ops.scatterAdd(Tensor.zeros(x.shape, dtype: g.dtype, device: g.device), dim: dim, index: index, source: g)]
        }
    }

    /// Index of the largest value along `dim` (not differentiable).
    public func argmax(dim: Int, keepDim: Bool = false) -> Tensor { Ops.argmax(self, dim: dim, keepDim: keepDim) }

    private func reduce(dims: [Int], keepDim: Bool, _ op: ReduceOp) -> Tensor {
        let inputShape = shape
        let kept = Ops.reduce(detached(), dims: dims, keepDim: true, op)
        let keptShape = kept.shape
        let reduced = Set((dims.isEmpty ? Array(0..<rank) : dims).map { Shape.normalize($0, rank: rank) })
        let out = keepDim ? kept : kept.reshaped(shape.indices.filter { !reduced.contains($0) }.map { shape[$0] })
        let scale = op == .mean ? Float(count / Swift.max(kept.count, 1)) : 1
        return record("\(op)", inputs: [self], output: out) { g in
            var g = g.reshaped(keptShape)
            if scale != 1 { g = Ops.binary(g, Tensor(scalar: 1 / scale), .mul) }
            return [g.expanded(to: inputShape).madeContiguous()]
        }
    }
}

/// Differentiable matrix product.
extension Tensor {
    /// `[..., m, k] x [..., k, n] -> [..., m, n]` with batch dimensions broadcast.
    public func matmul(_ other: Tensor) -> Tensor {
        let (a, b) = (detached(), other.detached())
        let (needA, needB) = (requiresGrad, other.requiresGrad)
        return record("matmul", inputs: [self, other], output: Ops.matmul(a, b)) { g in
            let ga = needA ? Ops.sumToShape(Ops.matmul(g, b.transposed(-1, -2)), a.shape) : nil
            let gb = needB ? Self.sharedRightGradient(a, g, shape: b.shape) : nil
            return [ga, gb]
        }
    }

    /// The gradient of the right operand `b` of `a x b` from the output gradient `g`. When `b` is one
    /// matrix shared by every batch of `a` (a linear layer's weight), the batches fold into the inner
    /// dimension: one GEMM `[k, batch * m] x [batch * m, n]` instead of a GEMM per batch and a sum.
    private static func sharedRightGradient(_ a: Tensor, _ g: Tensor, shape: [Int]) -> Tensor {
        guard shape.count == 2, a.rank > 2 else { return Ops.sumToShape(Ops.matmul(a.transposed(-1, -2), g), shape) }
        let (k, n) = (a.size(-1), g.size(-1))
        return Ops.matmul(a.reshaped([-1, k]).transposed(0, 1), g.reshaped([-1, n]))
    }
}
