import Foundation
import MegatronParallel
import XCTest

/// The launcher of node 1 of a two-node job. The test serves node 0's control store (`LaunchPlan.controlPort`),
/// as node 0's launcher would, so node 1's launcher joins the job and runs its ranks.
final class ProcessLauncherTests: XCTestCase {
    private var nodeZeroStore: RendezvousStore?

    private func plan(_ script: String, processes: Int = 3) throws -> LaunchPlan {
        let store = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true)
        nodeZeroStore = store
        return try LaunchPlan(processesPerNode: processes, nodes: 2, nodeRank: 1, masterAddress: "127.0.0.1",
                              masterPort: store.port - 1, command: ["/bin/sh", "-c", script])
    }

    func testChildrenGetTorchrunVariables() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("launch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = "echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR $MASTER_PORT "
            + "> \(directory.path)/$LOCAL_RANK"
        let plan = try plan(script)
        let outcome = try ProcessLauncher(plan: plan).run(baseEnvironment: ["PATH": "/usr/bin:/bin"])
        XCTAssertEqual(outcome, .succeeded)
        for localRank in 0..<3 {
            let line = try String(contentsOf: directory.appendingPathComponent("\(localRank)"), encoding: .utf8)
            XCTAssertEqual(line, "\(3 + localRank) 6 \(localRank) 3 1 127.0.0.1 \(plan.masterPort)\n")
        }
    }

    /// Local rank 1 (global rank 4) exits with 3 while the others sleep: they are stopped and the launch
    /// ends at once with rank 4's status.
    func testFailingRankStopsTheOthersAndIsNamed() throws {
        let start = Date()
        let outcome = try ProcessLauncher(plan: plan("if [ $LOCAL_RANK = 1 ]; then sleep 0.2; exit 3; fi; sleep 60"),
                                          gracePeriod: 5).run()
        XCTAssertEqual(outcome, .failed(rank: 4, reason: "exited with status 3", exitCode: 3))
        XCTAssertEqual("\(outcome)", "rank 4 failed: exited with status 3")
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }

    /// A rank killed by a signal; the others ignore SIGTERM, so only SIGKILL after the grace period ends them.
    func testKilledRankAndStubbornPeersEndWithinTheGracePeriod() throws {
        let start = Date()
        let script = "trap '' TERM; if [ $LOCAL_RANK = 0 ]; then kill -KILL $$; fi; sleep 60"
        let outcome = try ProcessLauncher(plan: plan(script), gracePeriod: 1).run()
        XCTAssertEqual(outcome, .failed(rank: 3, reason: "killed by signal 9 (SIGKILL)", exitCode: 137))
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
    }

    func testOutcomeWording() {
        XCTAssertEqual("\(LaunchOutcome.interrupted(signal: 15))", "interrupted by signal 15; the ranks were stopped")
        XCTAssertEqual(LaunchOutcome.interrupted(signal: 15).exitCode, 143)
        XCTAssertEqual("\(LaunchOutcome.failed(rank: 2, reason: "exited with status 3", exitCode: 3))",
                       "rank 2 failed: exited with status 3")
    }

    func testBadPlansAreRejected() {
        XCTAssertThrowsError(try LaunchPlan(processesPerNode: 0, command: ["/bin/true"]))
        XCTAssertThrowsError(try LaunchPlan(processesPerNode: 2, nodes: 2, nodeRank: 2, command: ["/bin/true"]))
        XCTAssertThrowsError(try LaunchPlan(processesPerNode: 2, command: [])) {
            XCTAssertEqual("\($0)", "launch needs a command after --")
        }
    }
}

final class RankContextTests: XCTestCase {
    func testThreadRanksSeeTheirContext() throws {
        let seen = LockedList()
        try RankContext.runThreads(worldSize: 3, timeout: 20) { context in
            let current = try XCTUnwrap(RankContext.current)
            XCTAssertEqual(current.environment.rank, context.world.rank)
            try current.world.barrier()
            seen.append([current.environment.rank, current.environment.worldSize, current.world.size])
        }
        XCTAssertEqual(seen.values.sorted { $0[0] < $1[0] }, [[0, 3, 3], [1, 3, 3], [2, 3, 3]])
        XCTAssertNil(RankContext.current, "the test thread runs no rank")
    }
}

private final class LockedList: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [[Int]] = []
    func append(_ item: [Int]) { lock.withLock { items.append(item) } }
    var values: [[Int]] { lock.withLock { items } }
}
