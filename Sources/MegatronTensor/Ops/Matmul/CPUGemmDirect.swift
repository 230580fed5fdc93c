/// The unpacked GEMM path for small and skinny products: one row of C at a time, from a contiguous,
/// alpha-scaled copy of the matching row of `op(A)`.
extension CPUGemmProblem {
    func runDirect() {
        parallelChunks(m, grain: max(1, Self.minFlopsPerWorker / max(1, 2 * n * k))) { rows in
            let aRow = UnsafeMutablePointer<Float>.allocate(capacity: k)
            defer { aRow.deallocate() }
            for i in rows {
                for p in 0..<k { aRow[p] = alpha * a.pointer(i, p).pointee }
                let cRow = c + i * ldc
                if b.colStride == 1 {
                    accumulateRowTimesMatrix(aRow, cRow)
                } else {
                    dotRowWithColumns(aRow, cRow)
                }
            }
        }
    }

    /// `cRow = aRow * op(B) + beta * cRow` as a sum of scaled rows of op(B) (B's rows are contiguous).
    private func accumulateRowTimesMatrix(_ aRow: UnsafePointer<Float>, _ cRow: UnsafeMutablePointer<Float>) {
        if beta == 0 {
            cRow.update(repeating: 0, count: n)
        } else if beta != 1 {
            for j in 0..<n { cRow[j] *= beta }
        }
        for p in 0..<k {
            axpy(aRow[p], b.pointer(p, 0), cRow, n)
        }
    }

    /// `cRow[j] = dot(aRow, column j of op(B)) + beta * cRow[j]` (op(B)'s columns are contiguous).
    private func dotRowWithColumns(_ aRow: UnsafePointer<Float>, _ cRow: UnsafeMutablePointer<Float>) {
        for j in 0..<n {
            let v = dot(aRow, b.pointer(0, j), k)
            cRow[j] = beta == 0 ? v : v + beta * cRow[j]
        }
    }
}

/// `y[0..<count] += s * x[0..<count]`.
@inline(__always)
private func axpy(_ s: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
    let sv = SIMD8<Float>(repeating: s)
    var j = 0
    while j + 8 <= count {
        let yp = UnsafeMutableRawPointer(y + j)
        let v = yp.loadUnaligned(as: SIMD8<Float>.self) + sv * UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
        yp.storeBytes(of: v, as: SIMD8<Float>.self)
        j += 8
    }
    while j < count {
        y[j] += s * x[j]
        j += 1
    }
}

/// The dot product of two contiguous vectors, in two 8-lane partial sums (independent add chains).
@inline(__always)
private func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> Float {
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var p = 0
    while p + 16 <= count {
        s0 += UnsafeRawPointer(x + p).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(y + p).loadUnaligned(as: SIMD8<Float>.self)
        s1 += UnsafeRawPointer(x + p + 8).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(y + p + 8).loadUnaligned(as: SIMD8<Float>.self)
        p += 16
    }
    var sum = (s0 + s1).sum()
    while p < count {
        sum += x[p] * y[p]
        p += 1
    }
    return sum
}
