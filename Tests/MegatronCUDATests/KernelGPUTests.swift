import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// NVRTC compilation, the disk cache, and the built-in kernels against CPU results.
final class KernelGPUTests: XCTestCase {
    func testCompileCachesAndReloadsTheSameImage() throws {
        let gpu = try GPUFixture.require()
        let cache = KernelCache(directory: scratchPath("kernels"))
        let source = try CUDAKernels.source("elementwise.cu")
        let compiler = try KernelCompiler(architecture: gpu.device.properties.architecture, cache: cache)
        var clock = Date()
        let first = try compiler.compile(source: source, name: "elementwise.cu")
        let compileMs = Date().timeIntervalSince(clock) * 1000
        clock = Date()
        let second = try KernelCompiler(architecture: gpu.device.properties.architecture, cache: cache)
            .compile(source: source, name: "elementwise.cu")
        let cachedMs = Date().timeIntervalSince(clock) * 1000
        XCTAssertFalse(first.fromCache)
        XCTAssertTrue(second.fromCache)
        XCTAssertEqual(first.bytes, second.bytes)
        XCTAssertEqual(first.format, .cubin, "NVRTC \(compiler.compilerVersion) should emit CUBIN for \(compiler.architecture)")
        print("elementwise.cu: NVRTC \(Int(compileMs)) ms, disk cache \(String(format: "%.2f", cachedMs)) ms, "
              + "\(first.bytes.count) bytes of \(first.format.rawValue)")
        _ = try CUDAModule(device: gpu.device, image: second).function(named: "axpby_bf16")
    }

    func testCompileErrorShowsNVRTCLog() throws {
        let gpu = try GPUFixture.require()
        let compiler = try KernelCompiler(architecture: gpu.device.properties.architecture, cache: nil)
        XCTAssertThrowsError(try compiler.compile(source: "extern \"C\" __global__ void broken() { undefined_name(); }",
                                                  name: "broken.cu")) { error in
            guard case .compilation(let kernel, _, let log) = error as? CUDAError else { return XCTFail("\(error)") }
            XCTAssertEqual(kernel, "broken.cu")
            XCTAssertTrue(log.contains("undefined_name"), log)
        }
    }

    func testFillAndUniform() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        let count = 1000
        let f32 = try gpu.allocator.allocate(bytes: count * 4, stream: gpu.stream.allocatorKey)
        let bf16 = try gpu.allocator.allocate(bytes: count * 2, stream: gpu.stream.allocatorKey)
        defer { gpu.free(f32, bf16) }
        try kernels.fill(f32.address, count: count, value: 0.1, type: .float32, stream: gpu.stream)
        try kernels.fill(bf16.address, count: count, value: 0.1, type: .bfloat16, stream: gpu.stream)
        XCTAssertEqual(Set(try gpu.download(f32, count: count, as: Float.self)), [0.1])
        XCTAssertEqual(Set(try gpu.download(bf16, count: count, as: UInt16.self)), [BF16.bits(0.1)])
        try kernels.uniform(f32.address, count: count, seed: 42, low: -2, high: 3, type: .float32, stream: gpu.stream)
        let values: [Float] = try gpu.download(f32, count: count)
        XCTAssertTrue(values.allSatisfy { $0 >= -2 && $0 < 3 })
        let mean = values.reduce(0, +) / Float(count)
        XCTAssertEqual(mean, 0.5, accuracy: 0.2)
        XCTAssertGreaterThan(Set(values).count, 990, "values are spread, not repeated")
    }

    func testVectorizedAxpbyMatchesCPU() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        var random = SplitMix64(seed: 3)
        for count in [1, 7, 8, 1003, 100_000] {   // tails of every length and a multi-block size
            let a = random.floats(count), b = random.floats(count)
            // fp32: out = 0.5 a + 2 b; scale: out = 3 a.
            let da = try gpu.upload(a), db = try gpu.upload(b)
            let out = try gpu.allocator.allocate(bytes: count * 4, stream: gpu.stream.allocatorKey)
            try kernels.axpby(out.address, da.address, db.address, alpha: 0.5, beta: 2, count: count, type: .float32, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(out, count: count, as: Float.self), zip(a, b).map { 0.5 * $0 + 2 * $1 })
            try kernels.axpby(out.address, da.address, 0, alpha: 3, beta: 0, count: count, type: .float32, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(out, count: count, as: Float.self), a.map { 3 * $0 })
            gpu.free(da, db, out)

            // bf16: add, computed in fp32 and rounded once.
            let ha = a.map(BF16.bits), hb = b.map(BF16.bits)
            let ea = try gpu.upload(ha), eb = try gpu.upload(hb)
            let eout = try gpu.allocator.allocate(bytes: count * 2, stream: gpu.stream.allocatorKey)
            try kernels.axpby(eout.address, ea.address, eb.address, alpha: 1, beta: 1, count: count, type: .bfloat16, stream: gpu.stream)
            let expected = zip(ha, hb).map { BF16.bits(BF16.value($0) + BF16.value($1)) }
            XCTAssertEqual(try gpu.download(eout, count: count, as: UInt16.self), expected, "bf16 add, count \(count)")
            gpu.free(ea, eb, eout)
        }
    }

    func testMisalignedVectorPointerIsRejected() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        XCTAssertThrowsError(try kernels.axpby(0x1004, 0x2000, 0x3000, alpha: 1, beta: 1, count: 4, type: .float32, stream: gpu.stream)) {
            XCTAssertTrue("\($0)".contains("16-byte aligned"))
        }
    }

    func testBlockReductionSumMatchesCPU() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        var random = SplitMix64(seed: 11)
        let scratch = try gpu.allocator.allocate(bytes: kernels.sumScratchCount * 4, stream: gpu.stream.allocatorKey)
        let out = try gpu.allocator.allocate(bytes: 4, stream: gpu.stream.allocatorKey)
        defer { gpu.free(scratch, out) }
        for count in [1, 31, 33, 1024, 1_000_003] {
            let values = random.floats(count, 0, 1)
            let input = try gpu.upload(values)
            try kernels.sum(out.address, input.address, count: count, scratch: scratch.address, stream: gpu.stream)
            let sum = try gpu.download(out, count: 1, as: Float.self)[0]
            let reference = values.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(Double(sum), reference, accuracy: max(1e-6, 1e-5 * reference), "count \(count)")
            // Deterministic: the same input gives the same bits.
            try kernels.sum(out.address, input.address, count: count, scratch: scratch.address, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(out, count: 1, as: Float.self)[0].bitPattern, sum.bitPattern)
            gpu.free(input)
        }
    }
}
