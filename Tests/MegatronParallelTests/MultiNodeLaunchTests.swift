import Foundation
import MegatronParallel
import XCTest

/// Two launchers of one job of two nodes, run side by side in this process (each on its own thread, as two
/// hosts would run them): they end the job together.
final class MultiNodeLaunchTests: XCTestCase {
    private final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Int: Result<LaunchOutcome, Error>] = [:]
        private var times: [Int: Date] = [:]
        func set(_ node: Int, _ result: Result<LaunchOutcome, Error>) {
            lock.withLock {
                results[node] = result
                times[node] = Date()
            }
        }
        func outcome(_ node: Int) throws -> LaunchOutcome { try lock.withLock { try results[node]!.get() } }
        func time(_ node: Int) -> Date { lock.withLock { times[node]! } }
    }

    /// A port whose neighbour (the launchers' control port) was free a moment ago.
    private func freePorts() throws -> Int {
        try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true).port - 1
    }

    /// Runs node `i`'s launcher with `scripts[i]` (a /bin/sh script per rank) on a thread per node.
    private func launch(_ scripts: [String], processesPerNode: Int = 2, gracePeriod: TimeInterval = 2,
                        joinTimeout: TimeInterval = 30) throws -> Outcomes {
        let port = try freePorts()
        let outcomes = Outcomes()
        let done = DispatchGroup()
        for (node, script) in scripts.enumerated() {
            var launcher = ProcessLauncher(plan: try LaunchPlan(processesPerNode: processesPerNode, nodes: 2, nodeRank: node,
                                                                masterPort: port, command: ["/bin/sh", "-c", script]),
                                           gracePeriod: gracePeriod)
            launcher.forwardsInterrupts = false
            launcher.joinTimeout = joinTimeout
            let configured = launcher
            done.enter()
            Thread {
                outcomes.set(node, Result { try configured.run(baseEnvironment: ["PATH": "/usr/bin:/bin"]) })
                done.leave()
            }.start()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the launchers ended")
        return outcomes
    }

    /// Rank 3 (node 1) exits with 3 while every other rank would sleep a minute: node 0's ranks are stopped
    /// too, within a poll interval and the grace period, and node 0 says why.
    func testARankThatFailsOnOneNodeEndsTheJobOnBoth() throws {
        let start = Date()
        let outcomes = try launch(["sleep 60", "if [ $RANK = 3 ]; then sleep 0.3; exit 3; fi; sleep 60"])
        XCTAssertEqual(try outcomes.outcome(1), .failed(rank: 3, reason: "exited with status 3", exitCode: 3))
        XCTAssertEqual(try outcomes.outcome(0), .stoppedByJob(reason: "rank 3 (node 1) exited with status 3"))
        XCTAssertEqual(try outcomes.outcome(0).exitCode, 1)
        XCTAssertLessThan(outcomes.time(0).timeIntervalSince(start), 15)
    }

    /// Node 1's ranks finish a second after node 0's: node 0's launcher (which serves the control store)
    /// waits for them, so node 1 does not take node 0's exit for a failure.
    func testNodeZeroWaitsForTheOthersToFinish() throws {
        let outcomes = try launch(["exit 0", "sleep 1; exit 0"])
        XCTAssertEqual(try outcomes.outcome(0), .succeeded)
        XCTAssertEqual(try outcomes.outcome(1), .succeeded)
        XCTAssertGreaterThanOrEqual(outcomes.time(0), outcomes.time(1).addingTimeInterval(-0.5))
    }

    /// Node 1 never starts: node 0 stops its ranks once the join timeout has passed.
    func testANodeThatNeverJoinsEndsTheJob() throws {
        var launcher = ProcessLauncher(plan: try LaunchPlan(processesPerNode: 1, nodes: 2, nodeRank: 0,
                                                            masterPort: try freePorts(), command: ["/bin/sleep", "60"]),
                                       gracePeriod: 1)
        launcher.forwardsInterrupts = false
        launcher.joinTimeout = 1
        XCTAssertEqual(try launcher.run(),
                       .stoppedByJob(reason: "only 1 of 2 nodes' launchers joined within 1 s"))
    }
}
