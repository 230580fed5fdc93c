import Foundation
import XCTest
import CCUDA
@testable import MegatronCUDA
import MegatronTestSupport

/// `--disable-bf16-reduced-precision-matmul`: bf16 GEMMs' split-K partial sums stay in fp32. The preference
/// mask is checked here without a GPU; on one, a long-K product (where cuBLASLt splits K) runs under it.
final class GemmReductionPrecisionTests: XCTestCase {
    func testOnlyBF16GemmsAreRestrictedToFP32PartialSums() {
        let bf16 = GemmProblem(m: 16, n: 16, k: 8192)
        let fp16 = GemmProblem(m: 16, n: 16, k: 8192, inputType: .float16, outputType: .float16)
        let fp32 = GemmProblem(m: 16, n: 16, k: 8192, inputType: .float32, outputType: .float32)
        XCTAssertEqual(GemmReductionPrecision.fp32PartialSums.reductionSchemeMask(for: bf16), 2,
                       "CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE")
        XCTAssertEqual(UInt32(CCUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE), 2)
        XCTAssertEqual(Int32(CCUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK), 3)
        XCTAssertNil(GemmReductionPrecision.fp32PartialSums.reductionSchemeMask(for: fp16))
        XCTAssertNil(GemmReductionPrecision.fp32PartialSums.reductionSchemeMask(for: fp32))
        XCTAssertNil(GemmReductionPrecision.reducedAllowed.reductionSchemeMask(for: bf16))
    }

    func testLongKBF16ProductIsRightWithFP32PartialSums() throws {
        let gpu = try GPUFixture.require()
        let gemm = try CublasLtGemm(device: gpu.device, allocator: gpu.allocator, reductionPrecision: .fp32PartialSums)
        let (m, n, k) = (16, 16, 8192)
        var random = SplitMix64(seed: 11)
        let aBits = random.floats(m * k).map(BF16.bits), bBits = random.floats(k * n).map(BF16.bits)
        let a = try gpu.upload(aBits), b = try gpu.upload(bBits)
        let d = try gpu.allocator.allocate(bytes: m * n * 4, stream: gpu.stream.allocatorKey)
        defer { gpu.free(a, b, d) }
        let p = GemmProblem(m: m, n: n, k: k, outputType: .float32)
        try gemm.run(p, a: a.address, b: b.address, d: d.address, stream: gpu.stream)
        let (av, bv) = (aBits.map { Double(BF16.value($0)) }, bBits.map { Double(BF16.value($0)) })
        let expected = (0..<(m * n)).map { ij in (0..<k).reduce(0.0) { $0 + av[ij / n * k + $1] * bv[$1 * n + ij % n] } }
        XCTAssertLessThan(relativeError(try gpu.download(d, count: m * n, as: Float.self).map(Double.init), expected), 1e-5)
    }
}
