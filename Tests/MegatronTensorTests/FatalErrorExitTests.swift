import Foundation
import MegatronCUDA
import XCTest
@testable import MegatronTensor

/// A CUDA failure inside a non-throwing op (out of memory, a kernel launch) ends the process with its message
/// and exit status 1, never a bare trap. Ending the process is the behaviour under test, so each case runs in
/// a child copy of this test bundle, which takes the failing path when `MEGATRON_FATAL_CHILD` is set.
final class FatalErrorExitTests: XCTestCase {
    private static let childVariable = "MEGATRON_FATAL_CHILD"

    func testOutOfMemoryInAnOpPrintsTheReportAndExitsWithStatus1() throws {
        let report = "CUDA out of memory: tried to allocate 2.00 GiB; 70.00 GiB held by the cache"
        if isChild {
            _ = cudaCheck("allocating 2147483648 bytes on cuda:0") { () throws -> Int in throw CUDAError.outOfMemory(report) }
            return   // not reached when the process ends; the parent then sees status 0
        }
        let outcome = try runChild(test: "testOutOfMemoryInAnOpPrintsTheReportAndExitsWithStatus1")
        XCTAssertEqual(outcome.status, 1)
        XCTAssertEqual(outcome.stderr, "error: \(report)\n")
    }

    func testKernelFailureNamesTheOpAndExitsWithStatus1() throws {
        if isChild {
            _ = cudaCheck("softmax [8, 1024]") { () throws -> Int in
                throw CUDAError.driver(call: "cuLaunchKernel", code: 700, name: "CUDA_ERROR_ILLEGAL_ADDRESS",
                                       message: "an illegal memory access was encountered")
            }
            return
        }
        let outcome = try runChild(test: "testKernelFailureNamesTheOpAndExitsWithStatus1")
        XCTAssertEqual(outcome.status, 1)
        XCTAssertEqual(outcome.stderr, "error: softmax [8, 1024] on CUDA failed: CUDA driver call cuLaunchKernel failed: "
                                       + "CUDA_ERROR_ILLEGAL_ADDRESS (700): an illegal memory access was encountered\n")
    }

    private var isChild: Bool { ProcessInfo.processInfo.environment[Self.childVariable] != nil }

    /// Runs one test of this class in a child test process; its exit status and standard error.
    private func runChild(test: String) throws -> (status: Int32, stderr: String) {
        #if os(Linux)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])
        process.arguments = ["MegatronTensorTests.FatalErrorExitTests/\(test)"]
        process.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: "1"]) { $1 }
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit, "the child ended on a signal")
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        #else
        throw XCTSkip("runs the XCTest bundle as a child process, which only Linux's xctest allows")
        #endif
    }
}
