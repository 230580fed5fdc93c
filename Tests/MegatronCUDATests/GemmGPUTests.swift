import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// cuBLASLt GEMMs against a float64 CPU reference on bf16-rounded inputs.
final class GemmGPUTests: XCTestCase {
    private static let geluC = (2.0 / Double.pi).squareRoot()

    /// GELU, tanh approximation (what cuBLASLt's epilogue computes), and its derivative.
    private func gelu(_ x: Double) -> Double { 0.5 * x * (1 + tanh(Self.geluC * (x + 0.044715 * x * x * x))) }
    private func geluGrad(_ x: Double) -> Double {
        let t = tanh(Self.geluC * (x + 0.044715 * x * x * x))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * Self.geluC * (1 + 3 * 0.044715 * x * x)
    }

    /// Device buffers and their bf16-rounded host values.
    private struct Operand {
        var values: [Double]
        var allocation: DeviceAllocation
    }

    private func bf16Operand(_ gpu: GPUFixture, count: Int, seed: UInt64) throws -> Operand {
        var random = SplitMix64(seed: seed)
        let bits = random.floats(count).map(BF16.bits)
        return Operand(values: bits.map { Double(BF16.value($0)) }, allocation: try gpu.upload(bits))
    }

    private func output(_ gpu: GPUFixture, count: Int, type: GemmDataType) throws -> DeviceAllocation {
        let allocation = try gpu.allocator.allocate(bytes: count * type.byteCount, stream: gpu.stream.allocatorKey)
        // Poison (0xFFFF.. is NaN in bf16 and fp32) so unwritten elements fail the comparison.
        try check(gpu.device.driver.cuMemsetD8Async(allocation.address, 0xff, count * type.byteCount, gpu.stream.handle), "memset")
        return allocation
    }

    private func read(_ gpu: GPUFixture, _ allocation: DeviceAllocation, count: Int, type: GemmDataType) throws -> [Double] {
        switch type {
        case .float32: return try gpu.download(allocation, count: count, as: Float.self).map(Double.init)
        case .bfloat16: return try gpu.download(allocation, count: count, as: UInt16.self).map { Double(BF16.value($0)) }
        case .float16: return try gpu.download(allocation, count: count, as: UInt16.self).map { Double(Float(Float16(bitPattern: $0))) }
        }
    }

    /// Row-major reference: D[b][i][j] = Σ_q op(A)[i][q]·op(B)[q][j] for packed operands.
    private func reference(_ p: GemmProblem, _ a: [Double], _ b: [Double]) -> [Double] {
        var d = [Double](repeating: 0, count: p.batchCount * p.m * p.n)
        for batch in 0..<p.batchCount {
            let aBase = batch * p.m * p.k, bBase = batch * p.k * p.n
            for i in 0..<p.m {
                for j in 0..<p.n {
                    var sum = 0.0
                    for q in 0..<p.k {
                        sum += (p.transposeA ? a[aBase + q * p.m + i] : a[aBase + i * p.k + q])
                            * (p.transposeB ? b[bBase + j * p.k + q] : b[bBase + q * p.n + j])
                    }
                    d[batch * p.m * p.n + i * p.n + j] = sum
                }
            }
        }
        return d
    }

    private func tolerance(_ type: GemmDataType) -> Double { type == .float32 ? 1e-5 : 1e-2 }

    func testTransposesAndOutputTypes() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        for (m, n, k) in [(64, 48, 40), (33, 17, 9)] {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    for outputType in [GemmDataType.bfloat16, .float32] {
                        let p = GemmProblem(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, outputType: outputType)
                        let a = try bf16Operand(gpu, count: m * k, seed: 1), b = try bf16Operand(gpu, count: k * n, seed: 2)
                        let d = try output(gpu, count: m * n, type: outputType)
                        try gemm.run(p, a: a.allocation.address, b: b.allocation.address, d: d.address, stream: gpu.stream)
                        let error = relativeError(try read(gpu, d, count: m * n, type: outputType), reference(p, a.values, b.values))
                        XCTAssertLessThan(error, tolerance(outputType), "\(m)x\(n)x\(k) transA \(transposeA) transB \(transposeB) \(outputType)")
                        gpu.free(a.allocation, b.allocation, d)
                    }
                }
            }
        }
    }

    func testStridedBatchAndPlanCache() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let p = GemmProblem(m: 32, n: 24, k: 16, transposeB: true, outputType: .float32, batchCount: 3)
        let a = try bf16Operand(gpu, count: 3 * 32 * 16, seed: 3), b = try bf16Operand(gpu, count: 3 * 16 * 24, seed: 4)
        let d = try output(gpu, count: 3 * 32 * 24, type: .float32)
        defer { gpu.free(a.allocation, b.allocation, d) }
        try gemm.run(p, a: a.allocation.address, b: b.allocation.address, d: d.address, stream: gpu.stream)
        try gemm.run(p, a: a.allocation.address, b: b.allocation.address, d: d.address, stream: gpu.stream)
        XCTAssertEqual(gemm.cachedPlanCount, 1, "the second run reuses the planned algorithm")
        XCTAssertLessThan(relativeError(try read(gpu, d, count: 3 * 32 * 24, type: .float32), reference(p, a.values, b.values)), 1e-5)
    }

    /// Autotuning picks among several algorithms; whichever wins must compute the same product,
    /// and a later call of the problem reuses it.
    func testAutotunedAlgorithmIsCorrect() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator, autotune: true)
        let p = GemmProblem(m: 256, n: 192, k: 128, transposeB: true)
        let a = try bf16Operand(gpu, count: 256 * 128, seed: 20), b = try bf16Operand(gpu, count: 192 * 128, seed: 21)
        let d = try output(gpu, count: 256 * 192, type: .bfloat16)
        defer { gpu.free(a.allocation, b.allocation, d) }
        for _ in 0..<2 {
            try gemm.run(p, a: a.allocation.address, b: b.allocation.address, d: d.address, stream: gpu.stream)
            XCTAssertLessThan(relativeError(try read(gpu, d, count: 256 * 192, type: .bfloat16), reference(p, a.values, b.values)), 1e-2)
        }
        XCTAssertEqual(gemm.cachedPlanCount, 1)
    }

    func testAccumulateIntoOutput() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let p = GemmProblem(m: 16, n: 32, k: 64, transposeA: true, outputType: .float32)   // wgrad into an fp32 main grad
        let a = try bf16Operand(gpu, count: 16 * 64, seed: 5), b = try bf16Operand(gpu, count: 64 * 32, seed: 6)
        var random = SplitMix64(seed: 7)
        let initial = random.floats(16 * 32)
        let d = try gpu.upload(initial)
        defer { gpu.free(a.allocation, b.allocation, d) }
        try gemm.run(p, a: a.allocation.address, b: b.allocation.address, d: d.address, beta: 1, stream: gpu.stream)
        let expected = zip(reference(p, a.values, b.values), initial).map { $0 + Double($1) }
        XCTAssertLessThan(relativeError(try read(gpu, d, count: 16 * 32, type: .float32), expected), 1e-5)
    }

    func testBiasAndGeluEpilogues() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let (m, n, k) = (64, 32, 48)
        let x = try bf16Operand(gpu, count: m * k, seed: 8), w = try bf16Operand(gpu, count: n * k, seed: 9)
        let bias = try bf16Operand(gpu, count: n, seed: 10)
        defer { gpu.free(x.allocation, w.allocation, bias.allocation) }
        let product = reference(GemmProblem(m: m, n: n, k: k, transposeB: true), x.values, w.values)
        let withBias = product.enumerated().map { $0.element + bias.values[$0.offset % n] }
        let cases: [(GemmEpilogueKind, [Double])] = [
            (.bias, withBias), (.gelu, product.map(gelu)), (.biasGelu, withBias.map(gelu)),
        ]
        for (epilogue, expected) in cases {
            let p = GemmProblem(m: m, n: n, k: k, transposeB: true, epilogue: epilogue)
            let d = try output(gpu, count: m * n, type: .bfloat16)
            try gemm.run(p, a: x.allocation.address, b: w.allocation.address, d: d.address, bias: bias.allocation.address, stream: gpu.stream)
            XCTAssertLessThan(relativeError(try read(gpu, d, count: m * n, type: .bfloat16), expected), 1e-2, "\(epilogue)")
            gpu.free(d)
        }
    }

    /// MLP fc1 forward with GELU_AUX_BIAS, then the fc2 dgrad with DGELU_BGRAD: the pair that
    /// fuses the activation and the fc1 bias gradient into the matmuls.
    func testGeluAuxForwardAndDgeluBiasGradBackward() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let (tokens, hidden, ffn) = (64, 32, 128)
        let x = try bf16Operand(gpu, count: tokens * hidden, seed: 11), w1 = try bf16Operand(gpu, count: ffn * hidden, seed: 12)
        let b1 = try bf16Operand(gpu, count: ffn, seed: 13)
        let dy = try bf16Operand(gpu, count: tokens * hidden, seed: 14), w2 = try bf16Operand(gpu, count: hidden * ffn, seed: 15)
        let h = try output(gpu, count: tokens * ffn, type: .bfloat16), aux = try output(gpu, count: tokens * ffn, type: .bfloat16)
        let dPre = try output(gpu, count: tokens * ffn, type: .bfloat16), db1 = try output(gpu, count: ffn, type: .bfloat16)
        defer { gpu.free(x.allocation, w1.allocation, b1.allocation, dy.allocation, w2.allocation, h, aux, dPre, db1) }

        let forward = GemmProblem(m: tokens, n: ffn, k: hidden, transposeB: true, epilogue: .geluAux(withBias: true))
        try gemm.run(forward, a: x.allocation.address, b: w1.allocation.address, d: h.address,
                     bias: b1.allocation.address, aux: aux.address, stream: gpu.stream)
        let pre = reference(GemmProblem(m: tokens, n: ffn, k: hidden, transposeB: true), x.values, w1.values)
            .enumerated().map { $0.element + b1.values[$0.offset % ffn] }
        let auxValues = try read(gpu, aux, count: tokens * ffn, type: .bfloat16)
        XCTAssertLessThan(relativeError(auxValues, pre), 1e-2, "aux holds the GELU input")
        XCTAssertLessThan(relativeError(try read(gpu, h, count: tokens * ffn, type: .bfloat16), pre.map(gelu)), 1e-2)

        // dH[T,ffn] = dY[T,h]·W2[h,ffn]; dPre = dH ⊙ gelu'(pre); db1 = Σ_t dPre.
        let backward = GemmProblem(m: tokens, n: ffn, k: hidden, epilogue: .dgelu(biasGradient: true))
        try gemm.run(backward, a: dy.allocation.address, b: w2.allocation.address, d: dPre.address,
                     bias: db1.address, aux: aux.address, stream: gpu.stream)
        let dH = reference(GemmProblem(m: tokens, n: ffn, k: hidden), dy.values, w2.values)
        let expected = dH.enumerated().map { $0.element * geluGrad(auxValues[$0.offset]) }
        XCTAssertLessThan(relativeError(try read(gpu, dPre, count: tokens * ffn, type: .bfloat16), expected), 1e-2)
        let biasGradient = (0..<ffn).map { j in (0..<tokens).reduce(0.0) { $0 + expected[$1 * ffn + j] } }
        XCTAssertLessThan(relativeError(try read(gpu, db1, count: ffn, type: .bfloat16), biasGradient), 1e-2)
    }

    /// wgrad dW[out,in] = dYᵀ·X with the bias gradient db = Σ_t dY fused (BGRADB).
    func testWeightGradientWithFusedBiasGradient() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let (tokens, inFeatures, outFeatures) = (128, 32, 48)
        let dy = try bf16Operand(gpu, count: tokens * outFeatures, seed: 16), x = try bf16Operand(gpu, count: tokens * inFeatures, seed: 17)
        for outputType in [GemmDataType.float32, .bfloat16] {
            let dw = try output(gpu, count: outFeatures * inFeatures, type: outputType), db = try output(gpu, count: outFeatures, type: outputType)
            let p = GemmProblem(m: outFeatures, n: inFeatures, k: tokens, transposeA: true, outputType: outputType,
                                epilogue: .biasGradientFromA)
            try gemm.run(p, a: dy.allocation.address, b: x.allocation.address, d: dw.address, bias: db.address, stream: gpu.stream)
            XCTAssertLessThan(relativeError(try read(gpu, dw, count: outFeatures * inFeatures, type: outputType),
                                            reference(p, dy.values, x.values)), tolerance(outputType), "\(outputType)")
            let expected = (0..<outFeatures).map { o in (0..<tokens).reduce(0.0) { $0 + dy.values[$1 * outFeatures + o] } }
            XCTAssertLessThan(relativeError(try read(gpu, db, count: outFeatures, type: outputType), expected), tolerance(outputType),
                              "bias gradient \(outputType)")
            gpu.free(dw, db)
        }
        gpu.free(dy.allocation, x.allocation)
    }

    /// Gradient-accumulation fusion: wgrad added into an fp32 main grad (C = D, beta 1) while the
    /// BGRADB epilogue writes the fp32 bias gradient (overwritten, not accumulated).
    func testWeightGradientAccumulatedIntoFP32WithFusedBiasGradient() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        let (tokens, inFeatures, outFeatures) = (128, 32, 48)
        let dy = try bf16Operand(gpu, count: tokens * outFeatures, seed: 18), x = try bf16Operand(gpu, count: tokens * inFeatures, seed: 19)
        var random = SplitMix64(seed: 20)
        let initial = random.floats(outFeatures * inFeatures)
        let dw = try gpu.upload(initial), db = try output(gpu, count: outFeatures, type: .float32)
        defer { gpu.free(dy.allocation, x.allocation, dw, db) }
        let p = GemmProblem(m: outFeatures, n: inFeatures, k: tokens, transposeA: true, outputType: .float32,
                            epilogue: .biasGradientFromA)
        try gemm.run(p, a: dy.allocation.address, b: x.allocation.address, d: dw.address, beta: 1, bias: db.address, stream: gpu.stream)
        let expected = zip(reference(p, dy.values, x.values), initial).map { $0 + Double($1) }
        XCTAssertLessThan(relativeError(try read(gpu, dw, count: outFeatures * inFeatures, type: .float32), expected), 1e-5)
        let bias = (0..<outFeatures).map { o in (0..<tokens).reduce(0.0) { $0 + dy.values[$1 * outFeatures + o] } }
        XCTAssertLessThan(relativeError(try read(gpu, db, count: outFeatures, type: .float32), bias), 1e-5, "bias gradient")
    }

    func testMissingEpiloguePointerIsAnError() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator)
        XCTAssertThrowsError(try gemm.run(GemmProblem(m: 8, n: 8, k: 8, epilogue: .bias), a: 0x1000, b: 0x2000, d: 0x3000,
                                          stream: gpu.stream)) { XCTAssertTrue("\($0)".contains("needs a bias pointer")) }
    }
}
