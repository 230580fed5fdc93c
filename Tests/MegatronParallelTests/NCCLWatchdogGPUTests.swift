import Foundation
@testable import MegatronParallel
import MegatronTensor
import XCTest
import MegatronTestSupport

/// The watchdog on a real NCCL communicator of one rank (one GPU suffices): the operations it tracks are seen
/// complete from its own thread, and nothing is reported.
final class NCCLWatchdogGPUTests: XCTestCase {
    func testTrackedOperationsCompleteAndNothingIsReported() throws {
        try requireGPU("NCCL watchdog GPU test")
        let id: NCCLUniqueID
        do {
            id = try NCCLUniqueID.make()
        } catch let error as CommunicatorError where error.operation == "loading NCCL" {
            throw XCTSkip("\(error)")
        }
        let device = try CUDAContext.shared(ordinal: 0).device
        let watchdog = CollectiveWatchdog(rank: 0, timeout: 60, pollInterval: 0.05, onThreadStart: { try? device.makeCurrent() },
                                          onFailure: { XCTFail("reported: \($0)") })
        let comm = try NCCLCommunicator(id: id, rank: 0, size: 1, device: .cuda(0), watchdog: watchdog)
        let x = Tensor(shape: [1024], values: (0..<1024).map(Float.init)).to(.cuda(0))
        for _ in 0..<200 { try comm.allReduce(x, op: .sum).wait() }
        try comm.barrier()
        XCTAssertEqual(x.floats()[1023], 1023)
        let deadline = Date().addingTimeInterval(10)
        while watchdog.pendingCount > 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertEqual(watchdog.pendingCount, 0, "the watchdog's thread saw every operation complete")
        XCTAssertNil(comm.asyncFailure())
    }
}
