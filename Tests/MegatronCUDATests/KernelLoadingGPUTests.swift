import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// Cold and warm starts of the kernel catalog from an empty disk cache: every file compiles (all at
/// once), loads, and comes from the cache next time; a launch in background mode waits for its own
/// file only. Prints per-file NVRTC times for the device's architecture.
final class KernelLoadingGPUTests: XCTestCase {
    func testEagerColdStartCompilesEveryFileConcurrentlyThenWarmStartReadsTheCache() throws {
        let gpu = try GPUFixture.require()
        let cache = KernelCache(directory: scratchPath("kernels"))
        var clock = Date()
        let cold = try CUDAKernels(device: gpu.device, cache: cache, loading: .eager)
        let coldMs = Date().timeIntervalSince(clock) * 1000
        let report = cold.loadReport
        XCTAssertEqual([report.compiledCount, report.cachedCount], [CUDAKernels.programs.count, 0])
        let timings = cold.moduleTimings
        XCTAssertEqual(timings.map(\.file), CUDAKernels.programs)
        for timing in timings.sorted(by: { $0.milliseconds > $1.milliseconds }) {
            print(String(format: "%@ %@: NVRTC %.0f ms, ready after %.0f ms", gpu.device.properties.architecture,
                         timing.file, timing.milliseconds, timing.readyAfterMilliseconds))
        }
        let sum = timings.map(\.milliseconds).reduce(0, +)
        print(String(format: "cold start, %d programs on %d cores: %.0f ms (compile wall %.0f ms, sum of files %.0f ms)",
                     timings.count, ProcessInfo.processInfo.activeProcessorCount, coldMs, report.milliseconds, sum))
        XCTAssertLessThan(report.milliseconds, sum, "files compiled concurrently")

        clock = Date()
        let warm = try CUDAKernels(device: gpu.device, cache: cache, loading: .eager)
        print(String(format: "warm start: %.1f ms", Date().timeIntervalSince(clock) * 1000))
        XCTAssertEqual([warm.loadReport.compiledCount, warm.loadReport.cachedCount], [0, CUDAKernels.programs.count])
    }

    /// In background mode the first launch compiles (or waits for) softmax.cu alone and runs correctly.
    func testBackgroundLoadingLaunchesOnFirstUse() throws {
        let gpu = try GPUFixture.require()
        let cache = KernelCache(directory: scratchPath("kernels"))
        let clock = Date()
        let nn = try CUDAKernels(device: gpu.device, cache: cache)
        let constructionMs = Date().timeIntervalSince(clock) * 1000
        let x: [Float] = [0, 1, 2, 3, -1, -1, -1, -1]
        let input = try gpu.upload(x), out = try gpu.poisoned(x.count)
        defer { gpu.free(input, out) }
        try nn.softmaxForward(out.address, input: input.address, rows: 2, columns: 4, type: .float32, stream: gpu.stream)
        let firstLaunchMs = Date().timeIntervalSince(clock) * 1000
        let exps = x[0..<4].map { exp(Double($0)) }
        let expected = exps.map { $0 / exps.reduce(0, +) } + [0.25, 0.25, 0.25, 0.25]
        assertClose(try gpu.download(out, count: x.count, as: Float.self), expected, 1e-6, "softmax after background load")
        print(String(format: "background: construction %.1f ms, first softmax launch after %.0f ms", constructionMs, firstLaunchMs))
        XCTAssertLessThan(constructionMs, 1000, "construction does not wait for NVRTC")
        XCTAssertEqual(nn.loadReport.compiledCount, CUDAKernels.programs.count, "the other files finished in the background")
    }
}
