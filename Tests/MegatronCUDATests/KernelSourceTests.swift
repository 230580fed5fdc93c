import Foundation
import XCTest
@testable import MegatronCUDA

final class KernelSourceTests: XCTestCase {
    /// The plugin embedded every .cu file with the kernel names the launchers call.
    func testEmbeddedSourcesHoldTheLaunchedKernels() throws {
        XCTAssertTrue(Set(EmbeddedKernels.sources.keys).isSuperset(of: ["common.cuh", "elementwise.cu", "reduce.cu"]))
        let elementwise = try CUDAKernels.source("elementwise.cu")
        XCTAssertTrue(elementwise.hasPrefix(EmbeddedKernels.sources["common.cuh"]!), "the shared header comes first")
        for name in ["fill_f32", "fill_bf16", "uniform_bf16", "uniform_f32", "axpby_f32", "axpby_bf16"] {
            XCTAssertTrue(elementwise.contains("extern \"C\" __global__ void \(name)("), name)
        }
        let reduce = try CUDAKernels.source("reduce.cu")
        XCTAssertTrue(reduce.contains("__shfl_down_sync"))
        XCTAssertThrowsError(try CUDAKernels.source("missing.cu")) { XCTAssertTrue("\($0)".contains("missing.cu")) }
    }

    /// The embedded text is byte-identical to the file in the tree (raw-string embedding keeps backslashes).
    func testEmbeddingMatchesTheFilesInTheTree() throws {
        let kernels = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/MegatronCUDA/Kernels").standardized
        guard FileManager.default.fileExists(atPath: kernels.path) else {
            throw XCTSkip("the source tree (\(kernels.path)) is not on this machine")
        }
        // Op families keep their kernel files in folders under Kernels/; names are unique across them.
        let files = FileManager.default.enumerator(at: kernels, includingPropertiesForKeys: nil)!.compactMap { $0 as? URL }
            .filter { ["cu", "cuh"].contains($0.pathExtension) }
        XCTAssertEqual(Set(files.map(\.lastPathComponent)), Set(EmbeddedKernels.sources.keys))
        XCTAssertEqual(files.count, EmbeddedKernels.sources.count, "kernel file names are unique")
        for file in files {
            let onDisk = try String(contentsOf: file, encoding: .utf8)
            XCTAssertEqual(EmbeddedKernels.sources[file.lastPathComponent], onDisk, file.path)
        }
    }

    func testCacheKeySeparatesSourceOptionsArchitectureAndCompiler() {
        let base = KernelCache.key(source: "a", options: ["-O3"], architecture: "sm_90a", compilerVersion: "13.0")
        XCTAssertTrue(base.hasSuffix("-sm_90a-nvrtc13.0"))
        XCTAssertEqual(base, KernelCache.key(source: "a", options: ["-O3"], architecture: "sm_90a", compilerVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.key(source: "b", options: ["-O3"], architecture: "sm_90a", compilerVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.key(source: "a", options: ["-O2"], architecture: "sm_90a", compilerVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.key(source: "a", options: ["-O3"], architecture: "sm_80", compilerVersion: "13.0"))
        XCTAssertNotEqual(base, KernelCache.key(source: "a", options: ["-O3"], architecture: "sm_90a", compilerVersion: "12.8"))
        // Source/option boundary is unambiguous.
        XCTAssertNotEqual(KernelCache.key(source: "ab", options: ["c"], architecture: "x", compilerVersion: "1"),
                          KernelCache.key(source: "a", options: ["bc"], architecture: "x", compilerVersion: "1"))
    }

    func testCacheStoresAndLoads() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = KernelCache(directory: directory)
        XCTAssertNil(cache.load(key: "k"))
        cache.store(key: "k", image: [0x7f, 0x45, 0x4c, 0x46, 1, 2])
        XCTAssertEqual(cache.load(key: "k"), [0x7f, 0x45, 0x4c, 0x46, 1, 2])
        XCTAssertEqual(KernelCompiler.format(of: [0x7f, 0x45, 0x4c, 0x46, 1, 2]), .cubin)
        XCTAssertEqual(KernelCompiler.format(of: Array(".version 8.0".utf8)), .ptx)
    }

    func testDefaultCacheDirectoryFollowsEnvironment() {
        XCTAssertEqual(KernelCache.defaultCache(environment: ["MEGATRON_KERNEL_CACHE": "/tmp/k"]).directory.path, "/tmp/k")
        XCTAssertEqual(KernelCache.defaultCache(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"]).directory.path,
                       "/x/megatron-swift/kernels")
        XCTAssertEqual(KernelCache.defaultCache(environment: ["HOME": "/h"]).directory.path, "/h/.cache/megatron-swift/kernels")
    }
}
