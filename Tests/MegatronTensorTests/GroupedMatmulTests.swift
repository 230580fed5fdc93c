import XCTest
@testable import MegatronTensor
import MegatronTestSupport

/// The grouped linear ops an MoE layer's experts run as (`--moe-grouped-gemm`): rows in consecutive groups, one
/// weight per group, groups of 0 rows included. On the CPU against a double-precision loop over the groups; on
/// the GPU (cuBLASLt GEMMs on side streams) against the CPU and against running the groups one by one there.
final class GroupedMatmulTests: XCTestCase {
    /// Uneven groups, two of them empty (the first and one in the middle).
    static let counts = [0, 5, 1, 0, 9, 3]
    static let (inFeatures, outFeatures) = (24, 16)

    static func operands(dtype: DType) -> (x: Tensor, weights: [Tensor], g: Tensor) {
        let rows = counts.reduce(0, +)
        let weights = counts.indices.map { randomTensor([outFeatures, inFeatures], dtype: dtype, seed: 10 + UInt64($0)) }
        return (randomTensor([rows, inFeatures], dtype: dtype, seed: 1), weights, randomTensor([rows, outFeatures], dtype: dtype, seed: 2))
    }

    /// A fresh fp32 main grad on `device` holding `t`'s values.
    static func copy(_ t: Tensor, to device: Device = .cpu) -> Tensor {
        let main = Tensor.zeros(t.shape, device: device)
        Ops.copy(t, into: main)
        return main
    }

    /// Σ_k a[i, k] b(k, j) in Double for each group's rows: the reference of all three ops.
    static func reference(rows: Int, columns: Int, depth: Int, _ value: (Int, Int, Int) -> Float) -> [Float] {
        (0..<(rows * columns)).map { index in
            Float((0..<depth).reduce(0.0) { $0 + Double(value(index / columns, index % columns, $1)) })
        }
    }

    func testCPUOpsMatchAPerGroupReference() {
        let (x, weights, g) = Self.operands(dtype: .float32)
        let (xv, gv, wv) = (x.floats(), g.floats(), weights.map { $0.floats() })
        let (inF, outF) = (Self.inFeatures, Self.outFeatures)
        let groupOf = Ops.groupRanges(Self.counts).enumerated().flatMap { g, rows in rows.map { _ in g } }
        let y = Ops.groupedLinear(x, weights: weights, counts: Self.counts)
        XCTAssertEqual(y.shape, [x.shape[0], outF])
        assertClose(y.floats(), Self.reference(rows: x.shape[0], columns: outF, depth: inF) { r, j, k in
            xv[r * inF + k] * wv[groupOf[r]][j * inF + k]
        }, relative: 1e-5, absolute: 1e-5, "forward")
        let gx = Ops.groupedLinearInputGradient(g, weights: weights, counts: Self.counts)
        assertClose(gx.floats(), Self.reference(rows: x.shape[0], columns: inF, depth: outF) { r, k, j in
            gv[r * outF + j] * wv[groupOf[r]][j * inF + k]
        }, relative: 1e-5, absolute: 1e-5, "input gradient")
        // Half the groups accumulate into main grads holding earlier values, half return their gradient.
        let initial = Self.counts.indices.map { randomTensor([outF, inF], seed: 30 + UInt64($0)) }
        let targets: [Tensor?] = initial.enumerated().map { $0.offset % 2 == 0 ? Self.copy($0.element) : nil }
        let before = targets.map { $0?.floats() }
        let returned = Ops.groupedLinearWeightGradients(gradOutput: g, input: x, counts: Self.counts, into: targets)
        for (e, rows) in Ops.groupRanges(Self.counts).enumerated() {
            let expected = Self.reference(rows: outF, columns: inF, depth: rows.count) { j, k, t in
                gv[(rows.lowerBound + t) * outF + j] * xv[(rows.lowerBound + t) * inF + k]
            }
            if let target = targets[e] {
                XCTAssertNil(returned[e])
                assertClose(target.floats(), zip(before[e]!, expected).map { $0 + $1 }, relative: 1e-5, absolute: 1e-5, "main grad \(e)")
            } else {
                assertClose(try! XCTUnwrap(returned[e]).floats(), expected, relative: 1e-5, absolute: 1e-5, "weight gradient \(e)")
            }
        }
        XCTAssertEqual(returned[3]?.floats(), [Float](repeating: 0, count: outF * inF), "an empty group's gradient is zero")
    }

    /// bf16 (and fp32) on the GPU: forward, input gradient and weight gradients (returned, and added into fp32
    /// main grads) against the CPU, and against the GPU's dense ops run group by group.
    func testGPUGroupedOpsMatchCPUAndPerGroupOps() throws {
        let gpu = try requireGPU("grouped GEMM GPU tests")
        for dtype in [DType.bfloat16, .float32] {
            let (x, weights, g) = Self.operands(dtype: dtype)
            let (xd, wd, gd) = (x.to(gpu), weights.map { $0.to(gpu) }, g.to(gpu))
            let tolerance = gpuTolerance(dtype)
            let y = Ops.groupedLinear(xd, weights: wd, counts: Self.counts)
            assertParity(y, Ops.groupedLinear(x, weights: weights, counts: Self.counts), "\(dtype) forward", tolerance: tolerance)
            let gx = Ops.groupedLinearInputGradient(gd, weights: wd, counts: Self.counts)
            assertParity(gx, Ops.groupedLinearInputGradient(g, weights: weights, counts: Self.counts), "\(dtype) input gradient",
                         tolerance: tolerance)
            let ranges = Ops.groupRanges(Self.counts)
            for (e, rows) in ranges.enumerated() where !rows.isEmpty {
                let dense = Ops.linear(xd.narrowed(0, start: rows.lowerBound, length: rows.count), weight: wd[e], bias: nil)
                assertParity(y.narrowed(0, start: rows.lowerBound, length: rows.count), dense, "\(dtype) forward of group \(e) against linear",
                             tolerance: tolerance)
            }
            let initial = Self.counts.indices.map { randomTensor([Self.outFeatures, Self.inFeatures], seed: 40 + UInt64($0)) }
            let targetsGPU: [Tensor?] = initial.enumerated().map { $0.offset % 2 == 1 ? Self.copy($0.element, to: gpu) : nil }
            let targetsCPU: [Tensor?] = initial.enumerated().map { $0.offset % 2 == 1 ? Self.copy($0.element) : nil }
            let returnedGPU = Ops.groupedLinearWeightGradients(gradOutput: gd, input: xd, counts: Self.counts, into: targetsGPU)
            let returnedCPU = Ops.groupedLinearWeightGradients(gradOutput: g, input: x, counts: Self.counts, into: targetsCPU)
            for e in Self.counts.indices {
                if let target = targetsGPU[e] {
                    XCTAssertNil(returnedGPU[e])
                    assertParity(target, targetsCPU[e]!, "\(dtype) main grad \(e) (\(Self.counts[e]) rows)", tolerance: (1e-3, 1e-3))
                } else {
                    assertParity(try XCTUnwrap(returnedGPU[e]), try XCTUnwrap(returnedCPU[e]), "\(dtype) weight gradient \(e)",
                                 tolerance: tolerance)
                }
            }
        }
    }
}
