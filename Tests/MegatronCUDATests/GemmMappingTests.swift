import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// The row-major -> column-major mapping, checked by running a plain column-major GEMM (the
/// BLAS definition cuBLASLt implements) on the mapped layouts and comparing with a row-major one.
final class GemmMappingTests: XCTestCase {
    /// D(col-major) = op(A)·op(B) over flat arrays, as BLAS defines it.
    private func columnMajorGemm(_ v: ColumnMajorGemm, _ a: [Double], _ b: [Double], _ d: inout [Double], batch: Int) {
        for bi in 0..<batch {
            for i in 0..<v.m {
                for j in 0..<v.n {
                    var sum = 0.0
                    for p in 0..<v.k {
                        let aValue = v.transA ? a[bi * v.a.batchStride + p + i * v.a.ld] : a[bi * v.a.batchStride + i + p * v.a.ld]
                        let bValue = v.transB ? b[bi * v.b.batchStride + j + p * v.b.ld] : b[bi * v.b.batchStride + p + j * v.b.ld]
                        sum += aValue * bValue
                    }
                    d[bi * v.d.batchStride + i + j * v.d.ld] = sum
                }
            }
        }
    }

    private func rowMajorReference(_ p: GemmProblem, _ a: [Double], _ b: [Double]) -> [Double] {
        var d = [Double](repeating: .nan, count: p.batchCount * p.effectiveStrideD)
        for bi in 0..<p.batchCount {
            for i in 0..<p.m {
                for j in 0..<p.n {
                    var sum = 0.0
                    for q in 0..<p.k {
                        let aValue = p.transposeA ? a[bi * p.effectiveStrideA + q * p.effectiveLda + i] : a[bi * p.effectiveStrideA + i * p.effectiveLda + q]
                        let bValue = p.transposeB ? b[bi * p.effectiveStrideB + j * p.effectiveLdb + q] : b[bi * p.effectiveStrideB + q * p.effectiveLdb + j]
                        sum += aValue * bValue
                    }
                    d[bi * p.effectiveStrideD + i * p.effectiveLdd + j] = sum
                }
            }
        }
        return d
    }

    func testMappingMatchesRowMajorProductForAllTransposes() {
        var random = SplitMix64(seed: 7)
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                var p = GemmProblem(m: 5, n: 3, k: 4, transposeA: transposeA, transposeB: transposeB, batchCount: 2)
                p.lda = p.storedA.cols + 2     // padded rows
                p.ldd = 4
                let a = (0..<(p.batchCount * p.effectiveStrideA)).map { _ in Double(random.uniform()) }
                let b = (0..<(p.batchCount * p.effectiveStrideB)).map { _ in Double(random.uniform()) }
                let view = ColumnMajorGemm(p)
                XCTAssertEqual([view.m, view.n, view.k], [3, 5, 4])
                var d = [Double](repeating: .nan, count: p.batchCount * p.effectiveStrideD)
                columnMajorGemm(view, b, a, &d, batch: p.batchCount)   // cuBLASLt's A is our B
                let reference = rowMajorReference(p, a, b)
                for index in d.indices where !reference[index].isNaN {
                    XCTAssertEqual(d[index], reference[index], accuracy: 1e-12, "transA \(transposeA) transB \(transposeB) at \(index)")
                }
            }
        }
    }

    func testValidationNamesTheProblem() {
        var p = GemmProblem(m: 8, n: 8, k: 8)
        p.lda = 4
        XCTAssertThrowsError(try p.validate()) { XCTAssertTrue("\($0)".contains("lda 4 < 8")) }
        XCTAssertThrowsError(try GemmProblem(m: 8, n: 8, k: 8, inputType: .float32).validate())
        var aux = GemmProblem(m: 8, n: 12, k: 8, epilogue: .geluAux(withBias: false))
        XCTAssertThrowsError(try aux.validate()) { XCTAssertTrue("\($0)".contains("multiple of 8")) }
        aux.auxLeadingDimension = 16
        XCTAssertNoThrow(try aux.validate())
    }

    func testFlopsAndAlignment() {
        XCTAssertEqual(GemmProblem(m: 2, n: 3, k: 4, batchCount: 5).flops, 240)
        XCTAssertEqual(CublasLtGemm.alignment(of: [0x1000, 0x1010, 0]), 16)
        XCTAssertEqual(CublasLtGemm.alignment(of: [0x1000]), 256)
    }
}
