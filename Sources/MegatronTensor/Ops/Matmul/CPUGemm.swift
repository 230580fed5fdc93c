import Foundation

/// Single-precision GEMM on the CPU: `C = alpha * op(A) * op(B) + beta * C`, all row-major.
///
/// `op(A)` is `m x k` (A is stored `k x m` when `transA`), `op(B)` is `k x n`. Leading dimensions are
/// row strides in elements. When `beta == 0`, C is not read (it may hold NaN).
///
/// Large products go through packed, cache-blocked panels and a register-blocked micro-kernel
/// (GotoBLAS / BLIS structure), split over the cores; small or skinny ones take a direct path where
/// packing would cost more than it saves.
///
/// ```swift
/// // C (2 x 2) = A (2 x 3) * B^T, where B is stored 2 x 3.
/// let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [1, 0, 0, 0, 1, 0]
/// var c = [Float](repeating: 0, count: 4)
/// cpuSgemm(transA: false, transB: true, m: 2, n: 2, k: 3, alpha: 1, a: a, lda: 3, b: b, ldb: 3,
///          beta: 0, c: &c, ldc: 2)   // c == [1, 2, 4, 5]
/// ```
public func cpuSgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    precondition(m >= 0 && n >= 0 && k >= 0, "cpuSgemm: negative size m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transA ? m : k),
                 "cpuSgemm: lda=\(lda) is smaller than A's row width \(transA ? m : k)")
    precondition(ldb >= max(1, transB ? k : n),
                 "cpuSgemm: ldb=\(ldb) is smaller than B's row width \(transB ? k : n)")
    precondition(ldc >= max(1, n), "cpuSgemm: ldc=\(ldc) is smaller than C's row width \(n)")
    if m == 0 || n == 0 { return }
    let problem = CPUGemmProblem(
        m: m, n: n, k: k, alpha: alpha, beta: beta,
        a: GemmOperandView(a, ld: lda, transposed: transA),
        b: GemmOperandView(b, ld: ldb, transposed: transB), c: c, ldc: ldc)
    if k == 0 || alpha == 0 {
        problem.scaleC()
    } else if problem.prefersDirectPath {
        problem.runDirect()
    } else {
        problem.runBlocked()
    }
}

/// One GEMM call's operands and the choices of how to run it.
struct CPUGemmProblem {
    let m: Int, n: Int, k: Int
    let alpha: Float, beta: Float
    let a: GemmOperandView
    let b: GemmOperandView
    let c: UnsafeMutablePointer<Float>
    let ldc: Int

    /// Below these sizes packing and zero-padded edge tiles cost more than the micro-kernel wins:
    /// the packed path pays off from 8 x 8 x 8 and for 512 x 2 x 512, but not at 4 x 4 x 4 or for
    /// 2- to 4-row products.
    static let directMaxFlops = 2 * 7 * 7 * 7
    static let directMaxRows = 4

    /// Each worker gets at least this much arithmetic, so that waking and
    /// joining threads stays a small part of the call.
    static let minFlopsPerWorker = 4_000_000

    var flops: Int { 2 * m * n * k }

    var prefersDirectPath: Bool {
        flops <= Self.directMaxFlops || m <= Self.directMaxRows
    }

    /// `C = beta * C` (zeros when `beta == 0`, without reading C): the whole product when k or alpha is 0.
    func scaleC() {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 {
                row.update(repeating: 0, count: n)
            } else if beta != 1 {
                for j in 0..<n { row[j] *= beta }
            }
        }
    }
}
