import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// `cpuSgemm` against a straightforward double-precision GEMM, with an error bound from fp32 rounding.
final class CPUGemmTests: XCTestCase {
    /// Which implementation a case runs: the public entry (which picks a path), or one path forced.
    enum Path { case auto, blocked, direct }

    struct Case {
        var transA = false, transB = false
        var m: Int, n: Int, k: Int
        var alpha: Float = 1, beta: Float = 0
        /// Extra elements at the end of each row of A, B and C (leading dimension minus width).
        var padA = 0, padB = 0, padC = 0
        var path = Path.auto
    }

    /// Runs one case and compares every element of C (and C's row padding) with the reference.
    func check(_ t: Case, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SplitMix64(seed: seed &+ UInt64(t.m * 1_000_003 + t.n * 1009 + t.k))
        let (aRows, aCols) = t.transA ? (t.k, t.m) : (t.m, t.k)
        let (bRows, bCols) = t.transB ? (t.n, t.k) : (t.k, t.n)
        let lda = max(1, aCols + t.padA), ldb = max(1, bCols + t.padB), ldc = max(1, t.n + t.padC)
        // Padding of A and B holds NaN: reading it would poison the result.
        let a = Self.matrix(rows: aRows, cols: aCols, ld: lda, pad: .nan, rng: &rng)
        let b = Self.matrix(rows: bRows, cols: bCols, ld: ldb, pad: .nan, rng: &rng)
        // With beta == 0, C starts as NaN: it must not be read.
        var c = t.beta == 0
            ? [Float](repeating: .nan, count: max(1, t.m * ldc))
            : Self.matrix(rows: t.m, cols: t.n, ld: ldc, pad: 0, rng: &rng)
        for i in 0..<t.m { for j in t.n..<ldc { c[i * ldc + j] = 12345 } }
        let c0 = c

        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let problem = CPUGemmProblem(
                        m: t.m, n: t.n, k: t.k, alpha: t.alpha, beta: t.beta,
                        a: GemmOperandView(pa.baseAddress!, ld: lda, transposed: t.transA),
                        b: GemmOperandView(pb.baseAddress!, ld: ldb, transposed: t.transB),
                        c: pc.baseAddress!, ldc: ldc)
                    switch t.path {
                    case .auto:
                        cpuSgemm(transA: t.transA, transB: t.transB, m: t.m, n: t.n, k: t.k, alpha: t.alpha,
                                 a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                 beta: t.beta, c: pc.baseAddress!, ldc: ldc)
                    case .blocked: problem.runBlocked()
                    case .direct: problem.runDirect()
                    }
                }
            }
        }

        for i in 0..<t.m {
            for j in 0..<t.n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<t.k {
                    let av = Double(t.transA ? a[p * lda + i] : a[i * lda + p])
                    let bv = Double(t.transB ? b[j * ldb + p] : b[p * ldb + j])
                    sum += av * bv
                    magnitude += abs(av * bv)
                }
                let cOld = t.beta == 0 ? 0 : Double(c0[i * ldc + j])
                let expected = Double(t.alpha) * sum + Double(t.beta) * cOld
                // fp32 accumulation of k products: relative error up to about (k + 2) ulps of the magnitude.
                let bound = Double(t.k + 2) * 1.2e-7 * (abs(Double(t.alpha)) * magnitude + abs(Double(t.beta) * cOld)) + 1e-30
                let got = Double(c[i * ldc + j])
                guard abs(got - expected) <= bound else {
                    XCTFail("\(t): C[\(i),\(j)] = \(got), expected \(expected) (bound \(bound))", file: file, line: line)
                    return
                }
            }
            for j in t.n..<ldc where c[i * ldc + j] != 12345 {
                XCTFail("\(t): C padding [\(i),\(j)] was written", file: file, line: line)
                return
            }
        }
    }

    /// Values in [-1, 1) on a grid of 1/1024, so the products are exact in double precision.
    static func matrix(rows: Int, cols: Int, ld: Int, pad: Float, rng: inout SplitMix64) -> [Float] {
        var m = [Float](repeating: pad, count: max(1, rows * ld))
        for i in 0..<rows {
            for j in 0..<cols { m[i * ld + j] = Float(Int(rng.next() % 2048) - 1024) / 1024 }
        }
        return m
    }

    static let transposes = [(false, false), (false, true), (true, false), (true, true)]

    func testAllTransposesMatchDoubleReferenceOnManyShapes() {
        let shapes = [
            (1, 1, 1), (1, 17, 5), (17, 1, 5), (3, 3, 3), (5, 9, 7), (6, 8, 16), (7, 9, 13), (13, 31, 17),
            (33, 15, 64), (64, 64, 64), (50, 70, 90), (97, 61, 300), (130, 200, 37), (2, 300, 40), (300, 2, 40),
        ]
        for (ta, tb) in Self.transposes {
            for (m, n, k) in shapes {
                check(Case(transA: ta, transB: tb, m: m, n: n, k: k))
            }
        }
    }

    func testBothPathsHandleEdgeTilesAndSkinnyShapes() {
        let shapes = [(1, 1, 1), (1, 37, 19), (37, 1, 19), (5, 7, 3), (6, 8, 1), (7, 9, 2), (12, 16, 33), (19, 23, 29)]
        for path in [Path.blocked, .direct] {
            for (ta, tb) in Self.transposes {
                for (m, n, k) in shapes {
                    check(Case(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.75, beta: -0.5, path: path))
                }
            }
        }
    }

    func testLeadingDimensionsWiderThanRowsAreRespected() {
        for path in [Path.auto, .blocked, .direct] {
            for (ta, tb) in Self.transposes {
                check(Case(transA: ta, transB: tb, m: 23, n: 19, k: 41, padA: 3, padB: 5, padC: 7, path: path))
                check(Case(transA: ta, transB: tb, m: 70, n: 45, k: 60, beta: 1, padA: 1, padB: 9, padC: 2, path: path))
            }
        }
    }

    func testAlphaAndBetaValues() {
        for (alpha, beta) in [(Float(1), Float(1)), (2, 0), (-1.5, 0.25), (0.5, -2), (1, 1e-3)] {
            for (ta, tb) in Self.transposes {
                check(Case(transA: ta, transB: tb, m: 31, n: 29, k: 27, alpha: alpha, beta: beta))
                check(Case(transA: ta, transB: tb, m: 66, n: 90, k: 70, alpha: alpha, beta: beta))
            }
        }
    }

    /// Crosses every blocking boundary (kc = 256, mc = 96, nc = 2048) and the split over threads.
    func testShapesSpanningSeveralCacheBlocksAndThreads() {
        check(Case(m: 200, n: 130, k: 600, beta: 0.5))
        check(Case(transA: true, transB: true, m: 101, n: 250, k: 260, alpha: -1, beta: 1))
        check(Case(transB: true, m: 7, n: 2100, k: 9, beta: 2, path: .blocked))
        check(Case(transA: true, m: 7, n: 2100, k: 300, alpha: 0.5, beta: -1, padA: 1, path: .blocked))
        check(Case(transA: true, m: 2061, n: 9, k: 11, padC: 3, path: .blocked))
    }

    func testZeroDepthOrZeroAlphaOnlyScalesC() {
        for beta in [Float(0), 1, -0.5] {
            check(Case(m: 9, n: 11, k: 0, beta: beta))
            check(Case(m: 40, n: 50, k: 60, alpha: 0, beta: beta, padC: 2))
        }
    }

    func testEmptyOutputsTouchNothing() {
        var c: [Float] = [7]
        let a: [Float] = [1], b: [Float] = [1]
        cpuSgemm(transA: false, transB: false, m: 0, n: 1, k: 1, alpha: 1, a: a, lda: 1, b: b, ldb: 1,
                 beta: 0, c: &c, ldc: 1)
        cpuSgemm(transA: false, transB: false, m: 1, n: 0, k: 1, alpha: 1, a: a, lda: 1, b: b, ldb: 1,
                 beta: 0, c: &c, ldc: 1)
        XCTAssertEqual(c, [7])
    }

    /// The documentation example: C = A * B^T.
    func testSmallTransposedProductExactValues() {
        let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [1, 0, 0, 0, 1, 0]
        var c = [Float](repeating: .nan, count: 4)
        cpuSgemm(transA: false, transB: true, m: 2, n: 2, k: 3, alpha: 1, a: a, lda: 3, b: b, ldb: 3,
                 beta: 0, c: &c, ldc: 2)
        XCTAssertEqual(c, [1, 2, 4, 5])
    }
}
