import Foundation
@testable import MegatronParallel
import XCTest

final class CollectiveWatchdogTests: XCTestCase {
    private final class FakeCommunicator: AbortableCommunicator, @unchecked Sendable {
        private let lock = NSLock()
        private var failure: String?
        private var aborted = false
        func fail(_ reason: String) { lock.withLock { failure = reason } }
        var wasAborted: Bool { lock.withLock { aborted } }
        func asyncFailure() -> String? { lock.withLock { failure } }
        func abort() { lock.withLock { aborted = true } }
    }

    private final class Messages: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [String] = []
        func append(_ message: String) { lock.withLock { list.append(message) } }
        var all: [String] { lock.withLock { list } }
    }

    func testAnOperationPastTheTimeoutIsNamedWithTheRankAndTheTimeWaited() {
        let watchdog = CollectiveWatchdog(rank: 3, timeout: 600, onFailure: { _ in XCTFail("no thread should report") })
        let start = Date()
        watchdog.track("NCCL allReduce(sum) on rank 1 of 4") { false }
        watchdog.track("NCCL broadcast(root: 0) on rank 1 of 4") { true }
        XCTAssertNil(watchdog.check(now: start.addingTimeInterval(599)))
        XCTAssertEqual(watchdog.check(now: start.addingTimeInterval(601)),
                       "rank 3: NCCL allReduce(sum) on rank 1 of 4 has not completed after 601 s (the timeout is 600 s, "
                       + "--distributed-timeout-minutes): a peer rank is stuck or gone")
    }

    func testCompletedOperationsAreDroppedAndTheTimeoutCanChange() {
        let watchdog = CollectiveWatchdog(rank: 0, timeout: 10)
        var calls = 0
        watchdog.track("send") {
            calls += 1
            return true
        }
        XCTAssertNil(watchdog.check(now: Date().addingTimeInterval(100)))
        XCTAssertNil(watchdog.check(now: Date().addingTimeInterval(100)))
        XCTAssertEqual(calls, 1, "a completed operation is asked once, then forgotten")
        watchdog.timeout = 1
        watchdog.track("recv") { false }
        XCTAssertNotNil(watchdog.check(now: Date().addingTimeInterval(2)))
    }

    func testAnAsynchronousFailureOrAFailedCheckEndsTheJob() {
        let watchdog = CollectiveWatchdog(rank: 1, timeout: 600)
        let communicator = FakeCommunicator()
        watchdog.watch(communicator)
        XCTAssertNil(watchdog.check())
        communicator.fail("NCCL communicator (rank 1 of 2) failed: remote process exited or there was a network error")
        XCTAssertEqual(watchdog.check(), "rank 1: NCCL communicator (rank 1 of 2) failed: remote process exited or there "
                       + "was a network error")
        let other = CollectiveWatchdog(rank: 0, timeout: 600)
        struct DeviceFault: Error, CustomStringConvertible { var description: String { "an illegal memory access" } }
        other.track("NCCL allGather on rank 0 of 2") { throw DeviceFault() }
        XCTAssertEqual(other.check(), "rank 0: NCCL allGather on rank 0 of 2 failed: an illegal memory access")
    }

    /// The thread finds a blocking call past its deadline, aborts every watched communicator and reports.
    func testTheThreadAbortsTheCommunicatorsAndReportsABlockingCallPastItsDeadline() throws {
        let messages = Messages()
        let reported = expectation(description: "reported")
        let watchdog = CollectiveWatchdog(rank: 2, timeout: 0.3, pollInterval: 0.05, onFailure: {
            messages.append($0)
            reported.fulfill()
        })
        let communicator = FakeCommunicator()
        watchdog.watch(communicator)
        watchdog.withDeadline("ncclCommInitRank(rank 2 of 4 on cuda:0)") { Thread.sleep(forTimeInterval: 1) }
        wait(for: [reported], timeout: 10)
        XCTAssertTrue(communicator.wasAborted)
        XCTAssertEqual(messages.all.count, 1)
        XCTAssertTrue(messages.all[0].hasPrefix("rank 2: ncclCommInitRank(rank 2 of 4 on cuda:0) has not completed after 0 s"),
                      messages.all[0])
        XCTAssertTrue(messages.all[0].hasSuffix("; the communicators were aborted"), messages.all[0])
    }

    func testACallThatReturnsInTimeIsForgotten() {
        let watchdog = CollectiveWatchdog(rank: 0, timeout: 5, onFailure: { XCTFail($0) })
        XCTAssertEqual(watchdog.withDeadline("barrier") { 42 }, 42)
        XCTAssertNil(watchdog.check(now: Date().addingTimeInterval(60)))
    }
}
