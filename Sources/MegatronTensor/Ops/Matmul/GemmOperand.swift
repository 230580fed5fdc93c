/// A batch of matrices (the last two dimensions of a tensor) as a GEMM reads them: row-major, or row-major
/// of the transpose (a transposed view read in place), else a contiguous copy. The CPU and the CUDA matmul
/// share it.
struct GemmOperand {
    let base: Tensor
    let transposed: Bool
    let leading: Int
    let batchOffsets: [Int]

    init(_ t: Tensor) {
        let r = t.rank
        let rows = t.shape[r - 2], cols = t.shape[r - 1]
        let rowStride = t.strides[r - 2], colStride = t.strides[r - 1]
        if (colStride == 1 || cols == 1) && (rowStride >= cols || rows == 1) {
            (base, transposed, leading) = (t, false, max(rowStride, cols))
        } else if (rowStride == 1 || rows == 1) && (colStride >= rows || cols == 1) {
            (base, transposed, leading) = (t, true, max(colStride, rows))
        } else {
            (base, transposed, leading) = (t.madeContiguous(), false, cols)
        }
        let batchShape = Array(t.shape.dropLast(2))
        let batchStrides = Array(base.strides.dropLast(2))
        var offsets: [Int] = []
        offsets.reserveCapacity(Shape.elementCount(batchShape))
        StridedLoop.forEach(shape: batchShape + [1], strides: [batchStrides + [0]]) { o, _, _ in offsets.append(o[0]) }
        batchOffsets = offsets
    }

    /// The stride s with offset(i) = offset(0) + i * s for every batch, if there is one.
    var uniformBatchStride: Int? {
        guard batchOffsets.count > 1 else { return 0 }
        let s = batchOffsets[1] - batchOffsets[0]
        for i in 1..<batchOffsets.count where batchOffsets[i] - batchOffsets[i - 1] != s { return nil }
        return s
    }
}
