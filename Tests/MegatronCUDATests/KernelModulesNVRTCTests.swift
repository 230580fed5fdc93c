import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// `KernelModules` compiling real sources with NVRTC for sm_90a, without a GPU (compilation needs
/// only libnvrtc: `pip install nvidia-cuda-nvrtc-cu12` and put its lib folder on LD_LIBRARY_PATH).
final class KernelModulesNVRTCTests: XCTestCase {
    private static let architecture = "sm_90a"
    private static let broken = "extern \"C\" __global__ void broken() { undefined_name(); }"
    private static let exitChildVariable = "MEGATRON_TEST_EXIT_DURING_COMPILE_CACHE"

    private func requireNVRTC() throws {
        do {
            _ = try CUDALibraries.nvrtc()
        } catch {
            throw XCTSkip("NVRTC test skipped, libnvrtc not loadable: \(error)")
        }
    }

    /// A compile error in one file reaches whoever asks for that file, with NVRTC's log; the other
    /// files compile, are counted, and come from the cache the second time.
    func testCompileErrorReachesTheCallerAndOtherFilesStillCompile() throws {
        try requireNVRTC()
        let cache = KernelCache(directory: scratchPath("kernels"))
        let sources = ["rope.cu": try CUDAKernels.source("rope.cu"), "broken.cu": Self.broken]
        func modules() throws -> KernelModules {
            KernelModules(files: ["rope.cu", "broken.cu"], compiler: try KernelCompiler(architecture: Self.architecture, cache: cache),
                          source: { sources[$0]! })
        }
        let first = try modules()
        XCTAssertThrowsError(try first.image("broken.cu")) { error in
            guard case .compilation(let kernel, _, let log) = error as? CUDAError else { return XCTFail("\(error)") }
            XCTAssertEqual(kernel, "broken.cu")
            XCTAssertTrue(log.contains("undefined_name"), log)
        }
        XCTAssertThrowsError(try first.image("broken.cu"), "every caller gets the error")
        XCTAssertEqual(try first.image("rope.cu").format, .cubin)
        XCTAssertThrowsError(try first.image("norm.cu")) { XCTAssertTrue("\($0)".contains("no kernel module norm.cu"), "\($0)") }
        let report = first.report()
        XCTAssertEqual([report.compiledCount, report.cachedCount], [1, 0], "the broken file is in neither count")
        XCTAssertEqual(first.timings().map(\.file), ["rope.cu"])

        let second = try modules()
        XCTAssertEqual(try second.image("rope.cu").bytes, try first.image("rope.cu").bytes)
        XCTAssertEqual([second.report().compiledCount, second.report().cachedCount], [0, 1])
    }

    /// Files compile concurrently: the set's wall time is below the sum of its files' times.
    /// Prints per-file NVRTC times (this machine's cores and load decide the ratio).
    func testFilesCompileConcurrently() throws {
        try requireNVRTC()
        let files = ["softmax.cu", "cross_entropy.cu", "embedding.cu", "dropout.cu"]
        let modules = KernelModules(files: files, compiler: try KernelCompiler(architecture: Self.architecture, cache: nil),
                                    source: CUDAKernels.source)
        let timings = modules.timings()
        XCTAssertEqual(timings.map(\.file), files)
        let sum = timings.map(\.milliseconds).reduce(0, +)
        let wall = modules.report().milliseconds
        for timing in timings {
            print(String(format: "%@: %.0f ms, ready after %.0f ms", timing.file, timing.milliseconds, timing.readyAfterMilliseconds))
        }
        print(String(format: "%d files on %d cores: wall %.0f ms, sum %.0f ms", files.count,
                     ProcessInfo.processInfo.activeProcessorCount, wall, sum))
        if ProcessInfo.processInfo.activeProcessorCount > 1 {
            XCTAssertLessThan(wall, sum, "compilations overlapped")
        }
    }

    /// Exiting while background compilations run must not abort the process (NVRTC's destructors
    /// under a running compilation did: "LLVM ERROR: out of memory"), and the running compilations
    /// still reach the cache. Runs this test binary again as a child that exits mid-compile.
    func testExitDuringBackgroundCompileIsClean() throws {
        if let path = ProcessInfo.processInfo.environment[Self.exitChildVariable] {
            // The child: start compiling, then exit while NVRTC is busy.
            let cache = KernelCache(directory: URL(fileURLWithPath: path))
            _ = KernelModules(files: ["softmax.cu", "activation.cu"],
                              compiler: try KernelCompiler(architecture: Self.architecture, cache: cache),
                              source: CUDAKernels.source)
            Thread.sleep(forTimeInterval: 0.7)
            exit(0)
        }
        try requireNVRTC()
        let cache = KernelCache(directory: scratchPath("kernels"))
        let child = Process()
        child.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])
        child.arguments = ["MegatronCUDATests.KernelModulesNVRTCTests/testExitDuringBackgroundCompileIsClean"]
        child.environment = ProcessInfo.processInfo.environment.merging([Self.exitChildVariable: cache.directory.path]) { $1 }
        let errors = Pipe()
        child.standardError = errors
        child.standardOutput = FileHandle.nullDevice
        try child.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .exit, "child died of a signal: \(stderr.suffix(2000))")
        XCTAssertEqual(child.terminationStatus, 0, String(stderr.suffix(2000)))
        XCTAssertFalse(stderr.contains("LLVM ERROR"), stderr)
        let stored = (try? FileManager.default.contentsOfDirectory(atPath: cache.directory.path)) ?? []
        XCTAssertFalse(stored.isEmpty, "exit waited for the running compilations, which reached the cache")
        XCTAssertFalse(stored.contains { $0.hasSuffix(".tmp") }, "\(stored)")
    }
}
