import XCTest
import MegatronTensor
@testable import MegatronParallel

/// `NCCLOrderCheck` on small thread-rank programs that run fine on thread ranks (buffered sends, mailboxes per
/// group) but break NCCL's rules: it must pass what NCCL runs and name what NCCL would hang on or mismatch.
final class NCCLOrderCheckTests: XCTestCase {
    /// Runs `body` on two thread ranks through recording communicators and returns the log.
    func record(worldSize: Int = 2, _ body: @escaping (RecordingCommunicator) throws -> Void) throws -> CommunicationLog {
        let log = CommunicationLog(worldSize: worldSize)
        _ = try ThreadCommunicator.run(worldSize: worldSize, timeout: 30) { world in try body(RecordingCommunicator(world: world, log: log)) }
        return log
    }

    func vector(_ count: Int = 4) -> Tensor { Tensor.zeros([count], dtype: .float32, device: .cpu) }

    func assertFails(_ log: CommunicationLog, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try NCCLOrderCheck.check(log), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(expected), "\(error)", file: file, line: line)
        }
    }

    func testGroupedExchangesAndCollectivesPass() throws {
        let log = try record { comm in
            let other = 1 - comm.rank
            for _ in 0..<3 {
                try comm.batchSendRecv([.send(self.vector(), to: other), .recv(into: self.vector(), from: other)]).wait()
                try comm.allReduce(self.vector(), op: .sum).wait()
            }
        }
        let summary = try NCCLOrderCheck.check(log)
        XCTAssertEqual(summary.transfers, 6)
        XCTAssertEqual(summary.collectives, 3)
    }

    /// Both ranks send, then receive, in separate calls: on NCCL each send waits for a receive that waits
    /// behind the other rank's send.
    func testSeparateSendThenReceiveHangs() throws {
        let log = try record { comm in
            let other = 1 - comm.rank
            try comm.batchSendRecv([.send(self.vector(), to: other), .recv(into: self.vector(), from: other)]).wait()
            try comm.send(self.vector(), to: other).wait()
            try comm.recv(into: self.vector(), from: other).wait()
        }
        assertFails(log, "never finish")
    }

    /// The first transfer between two ranks connects them with both hosts in the call: rank 0 waits in its first
    /// send for rank 1, whose host waits in its own first send for rank 0.
    func testFirstTransfersInCrossedOrderHang() throws {
        let log = try record { comm in
            let other = 1 - comm.rank
            _ = try comm.send(self.vector(), to: other)
            try comm.batchSendRecv([.send(self.vector(), to: other), .recv(into: self.vector(), from: other)]).wait()
            try comm.recv(into: self.vector(), from: other).wait()
        }
        assertFails(log, "host stuck")
    }

    /// Two groups of the same ranks run on two streams: transfers issued in crossed order pass, unless a rank
    /// orders its compute after the first before issuing the second.
    func testWaitsAcrossGroupsOrderTheirStreams() throws {
        func crossed(waiting: Bool) throws -> CommunicationLog {
            try record { world in
                let a = try world.split(color: 0, key: world.rank), b = try world.split(color: 0, key: world.rank)
                let other = 1 - world.rank
                for link in [a, b] {
                    try link.batchSendRecv([.send(self.vector(), to: other), .recv(into: self.vector(), from: other)]).wait()
                }
                let (first, second) = world.rank == 0 ? (a, b) : (b, a)
                let sent = try first.send(self.vector(), to: other)
                if waiting { try sent.wait() }
                try second.recv(into: self.vector(), from: other).wait()
                if !waiting { try sent.wait() }
            }
        }
        XCTAssertNoThrow(try NCCLOrderCheck.check(try crossed(waiting: false)))
        assertFails(try crossed(waiting: true), "never finish")
    }

    func testMismatchedTransferSizesAreNamed() throws {
        let log = try record { comm in
            if comm.rank == 0 {
                _ = try comm.send(self.vector(4), to: 1)
            } else {
                _ = try comm.recv(into: self.vector(2), from: 0)   // never waited: thread ranks never compare
            }
        }
        assertFails(log, "sends 4 float32 but is received into 2 float32")
    }

    func testUnreceivedSendIsNamed() throws {
        let log = try record { comm in
            if comm.rank == 0 { _ = try comm.send(self.vector(), to: 1) }
        }
        assertFails(log, "world rank 0 sends 1 tensors to world rank 1")
    }

    /// Groups are told apart by their split, not by their ranks: the two groups here have the same ranks.
    func testCollectivesOfGroupsWithTheSameRanksAreAlignedPerGroup() throws {
        let log = try record(worldSize: 4) { world in
            let pairs = try world.split(color: world.rank / 2, key: world.rank)
            let again = try world.split(color: world.rank / 2, key: world.rank)
            try pairs.allReduce(self.vector(), op: .sum).wait()
            try again.allGather(self.vector(1), into: self.vector(2)).wait()
        }
        let summary = try NCCLOrderCheck.check(log)
        // The world's two splits, then one call on each of the four pair groups.
        XCTAssertEqual(summary.collectives, 6)
        XCTAssertEqual(summary.groups, 5)
    }
}
