/// Element copies between tensors of any layout (same shape and dtype), by element width.
enum StridedCopy {
    static func copy(from src: Tensor, to dst: Tensor) {
        precondition(src.shape == dst.shape && src.dtype == dst.dtype, "copy between \(src.shape) \(src.dtype) and \(dst.shape) \(dst.dtype)")
        switch src.dtype.byteSize {
        case 1: copy(src, dst, UInt8.self)
        case 2: copy(src, dst, UInt16.self)
        case 4: copy(src, dst, UInt32.self)
        default: copy(src, dst, UInt64.self)
        }
    }

    private static func copy<T>(_ src: Tensor, _ dst: Tensor, _: T.Type) {
        let s = src.pointer(as: T.self), d = dst.pointer(as: T.self)
        StridedLoop.forEach(shape: src.shape, strides: [src.strides, dst.strides]) { offsets, inner, innerStrides in
            let so = offsets[0], doff = offsets[1], ss = innerStrides[0], ds = innerStrides[1]
            for i in 0..<inner { d[doff + i * ds] = s[so + i * ss] }
        }
    }
}

/// Walks every row (all dimensions but the last) of a shape for several stride sets at once.
public enum StridedLoop {
    /// Calls `body(offsets, innerCount, innerStrides)` once per row, where `offsets[k]` is the element
    /// offset of the row's first element under `strides[k]`.
    public static func forEach(shape: [Int], strides: [[Int]],
                               _ body: (_ offsets: [Int], _ inner: Int, _ innerStrides: [Int]) -> Void) {
        let rank = shape.count
        if shape.contains(0) { return }
        if rank == 0 {
            body([Int](repeating: 0, count: strides.count), 1, [Int](repeating: 0, count: strides.count))
            return
        }
        let inner = shape[rank - 1]
        let innerStrides = strides.map { $0[rank - 1] }
        var index = [Int](repeating: 0, count: rank - 1)
        var offsets = [Int](repeating: 0, count: strides.count)
        let rows = shape.dropLast().reduce(1, *)
        for _ in 0..<rows {
            body(offsets, inner, innerStrides)
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                for k in 0..<strides.count { offsets[k] += strides[k][d] }
                if index[d] < shape[d] { break }
                for k in 0..<strides.count { offsets[k] -= strides[k][d] * shape[d] }
                index[d] = 0
                d -= 1
            }
        }
    }
}
