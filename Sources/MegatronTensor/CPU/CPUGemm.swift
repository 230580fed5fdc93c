/// Single-precision GEMM on the CPU: `C = alpha * op(A) * op(B) + beta * C`, all row-major.
///
/// `op(A)` is `m x k` (A is stored `k x m` when `transA`), `op(B)` is `k x n`. Leading dimensions are
/// row strides in elements. When `beta == 0`, C is not read (it may hold NaN).
public func cpuSgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    parallelChunks(m, grain: max(1, 4096 / max(1, n * k / 64))) { rows in
        for i in rows {
            let crow = c + i * ldc
            if beta == 0 {
                for j in 0..<n { crow[j] = 0 }
            } else if beta != 1 {
                for j in 0..<n { crow[j] *= beta }
            }
            for p in 0..<k {
                let aip = alpha * (transA ? a[p * lda + i] : a[i * lda + p])
                if aip == 0 { continue }
                if transB {
                    for j in 0..<n { crow[j] += aip * b[j * ldb + p] }
                } else {
                    let brow = b + p * ldb
                    for j in 0..<n { crow[j] += aip * brow[j] }
                }
            }
        }
    }
}
