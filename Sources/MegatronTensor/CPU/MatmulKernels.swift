extension Ops {
    /// Matrix product over the last two dimensions, `[..., m, k] x [..., k, n] -> [..., m, n]`, with the
    /// leading (batch) dimensions broadcast. Transposed views are read in place, not copied.
    public static func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank >= 2, got \(a.shape) and \(b.shape)")
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        precondition(b.shape[b.rank - 2] == k, "matmul shapes \(a.shape) and \(b.shape) do not chain")
        let batch = Shape.broadcast(Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)))
        if cudaDevice(a, b, op: "matmul") != nil {
            return CUDAOps.matmul(a, b, batch: batch, m: m, k: k, n: n, dtype: resultType(a.dtype, b.dtype))
        }
        let ea = GemmOperand(a.cast(to: .float32).expanded(to: batch + [m, k]))
        let eb = GemmOperand(b.cast(to: .float32).expanded(to: batch + [k, n]))
        let batches = Shape.elementCount(batch)
        let dtype = resultType(a.dtype, b.dtype)
        return Tensor.computed(shape: batch + [m, n], dtype: dtype) { out in
            for i in 0..<batches {
                cpuSgemm(transA: ea.transposed, transB: eb.transposed, m: m, n: n, k: k, alpha: 1,
                         a: ea.matrix(i), lda: ea.leading, b: eb.matrix(i), ldb: eb.leading,
                         beta: 0, c: out.baseAddress! + i * m * n, ldc: n)
            }
        }
    }
}

extension GemmOperand {
    /// Matrix `i` of the batch in host memory (fp32).
    func matrix(_ i: Int) -> UnsafePointer<Float> { UnsafePointer(base.pointer(as: Float.self) + batchOffsets[i]) }
}
