/// Reductions over dimensions: sum, mean, max, argmax.
public enum ReduceOp: Sendable { case sum, mean, max }

extension Ops {
    /// Reduces `x` over `dims` (all dimensions when empty); `keepDim` leaves size-1 dimensions in place.
    public static func reduce(_ x: Tensor, dims: [Int], keepDim: Bool = false, _ op: ReduceOp) -> Tensor {
        if x.device != .cpu, let (rows, columns) = leadingReduction(x, dims: dims) {
            // A bias gradient (sum over every token): reduce down the columns in place, no transposed copy.
            let dtype = x.dtype.isFloatingPoint ? x.dtype : (op == .mean ? .float32 : x.dtype)
            let kept = Array(x.shape.suffix(x.rank - dims.count))
            let shape = keepDim ? Array(repeating: 1, count: dims.count) + kept : kept
            return CUDAOps.reduceColumns(x, rows: rows, columns: columns, shape: shape, dtype: dtype, op)
        }
        let (moved, outShape, keptShape, width) = rowsOver(x, dims: dims)
        let rows = width == 0 ? Shape.elementCount(keptShape) : moved.count / width
        let dtype = x.dtype.isFloatingPoint ? x.dtype : (op == .mean ? .float32 : x.dtype)
        if moved.device != .cpu {
            return CUDAOps.reduceRows(moved, rows: rows, width: width, shape: keepDim ? keptShape : outShape, dtype: dtype, op)
        }
        return moved.withFloats { src in
            Tensor.computed(shape: keepDim ? keptShape : outShape, dtype: dtype) { out in
                parallelChunks(rows, grain: max(1, 16384 / max(width, 1))) { r in
                    for row in r { out[row] = reduceRow(src.baseAddress! + row * width, width, op) }
                }
            }
        }
    }

    /// Index of the largest element along `dim` (first one on ties), as int64.
    public static func argmax(_ x: Tensor, dim: Int, keepDim: Bool = false) -> Tensor {
        let (moved, outShape, keptShape, width) = rowsOver(x, dims: [dim])
        let rows = moved.count / max(width, 1)
        if moved.device != .cpu { return CUDAOps.argmaxRows(moved, rows: rows, width: width, shape: keepDim ? keptShape : outShape) }
        var result = [Int](repeating: 0, count: rows)
        moved.withFloats { src in
            for row in 0..<rows {
                let p = src.baseAddress! + row * width
                var best = 0
                for j in 0..<width {
                    if p[j].isNaN { best = j; break }
                    if p[j] > p[best] { best = j }
                }
                result[row] = best
            }
        }
        return Tensor(shape: keepDim ? keptShape : outShape, ints: result)
    }

    /// Sums a broadcast gradient back down to `shape` (the backward of broadcasting).
    public static func sumToShape(_ x: Tensor, _ shape: [Int]) -> Tensor {
        if x.shape == shape { return x }
        let lead = x.rank - shape.count
        var dims = Array(0..<lead)
        for (i, s) in shape.enumerated() where s == 1 && x.shape[lead + i] != 1 { dims.append(lead + i) }
        let reduced = reduce(x, dims: dims, keepDim: true, .sum)
        return reduced.reshaped(shape)
    }

    @inline(__always)
    static func reduceRow(_ p: UnsafePointer<Float>, _ n: Int, _ op: ReduceOp) -> Float {
        switch op {
        case .sum, .mean:
            // Pairwise-ish: eight partial sums keep rounding error low on long rows.
            var acc = SIMD8<Float>()
            var i = 0
            while i + 8 <= n {
                acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
                i += 8
            }
            var s = acc.sum()
            while i < n { s += p[i]; i += 1 }
            return op == .mean ? s / Float(n) : s
        case .max:
            var m = -Float.infinity
            for i in 0..<n {
                if p[i].isNaN { return .nan }
                m = Swift.max(m, p[i])
            }
            return m
        }
    }

    /// For a contiguous `x` reduced over its leading dimensions only (`[0, 1, ..., j - 1]`, some trailing
    /// ones kept): the reduced and kept element counts, seen as `[rows, columns]`.
    static func leadingReduction(_ x: Tensor, dims: [Int]) -> (rows: Int, columns: Int)? {
        guard x.isContiguous, !dims.isEmpty else { return nil }
        let reduced = Set(dims.map { Shape.normalize($0, rank: x.rank) })
        guard reduced.count == dims.count, reduced.count < x.rank, reduced == Set(0..<reduced.count) else { return nil }
        let rows = x.shape.prefix(reduced.count).reduce(1, *), columns = x.count / Swift.max(rows, 1)
        return rows > 0 && columns > 1 ? (rows, columns) : nil
    }

    /// Moves the reduced dimensions last and makes the tensor contiguous, so each output is one row.
    static func rowsOver(_ x: Tensor, dims: [Int]) -> (Tensor, [Int], [Int], Int) {
        let reduced = Set((dims.isEmpty ? Array(0..<x.rank) : dims).map { Shape.normalize($0, rank: x.rank) })
        let kept = (0..<x.rank).filter { !reduced.contains($0) }
        let order = kept + reduced.sorted()
        let moved = x.permuted(order).madeContiguous()
        let width = reduced.map { x.shape[$0] }.reduce(1, *)
        let outShape = kept.map { x.shape[$0] }
        let keptShape = (0..<x.rank).map { reduced.contains($0) ? 1 : x.shape[$0] }
        return (moved, outShape, keptShape, width)
    }
}
