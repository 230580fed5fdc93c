import Foundation
import XCTest

/// Two `megatron launch` processes as the launchers of a two-node job on one machine, and a launcher killed
/// outright: the job never outlives a dead part of it.
final class LaunchFailureTests: XCTestCase {
    /// A master port whose neighbour (the launchers' control port) was free a moment ago.
    private func freeMasterPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                guard bind(fd, $0, length) == 0, getsockname(fd, $0, &length) == 0 else { throw XCTSkip("no free port") }
            }
        }
        return Int(UInt16(bigEndian: address.sin_port)) - 1
    }

    private func node(_ rank: Int, port: Int, _ megatron: MegatronProcess, program: [String]) throws -> MegatronProcess.Running {
        try megatron.start(["launch", "--nnodes", "2", "--node-rank", "\(rank)", "--nproc-per-node", "1",
                            "--master-port", "\(port)", "--grace-period", "2", "--exec", "--"] + program)
    }

    /// Node 1's launcher is killed with SIGKILL (it can tell no one): node 0 notices its dropped connection,
    /// stops its own rank and exits non-zero, naming node 1, within seconds.
    func testAKilledLauncherOnOneNodeEndsTheJobOnTheOther() throws {
        let megatron = try MegatronProcess.built()
        let port = try freeMasterPort()
        // A program, not a megatron rank, so it outlives its killed launcher; its odd duration finds it afterwards.
        let orphan = ["/bin/sleep", "59.\(Int.random(in: 100_000...999_999))"]
        let node0 = try node(0, port: port, megatron, program: ["/bin/sleep", "60"])
        let node1 = try node(1, port: port, megatron, program: orphan)
        defer {
            for pid in processes(mentioning: orphan[1]) { kill(pid, SIGKILL) }
            _ = node1.finish()
        }
        Thread.sleep(forTimeInterval: 1)
        let killed = Date()
        kill(node1.pid, SIGKILL)
        let outcome = node0.finish(timeout: 30)
        XCTAssertLessThan(Date().timeIntervalSince(killed), 10, outcome.output)
        XCTAssertFalse(outcome.killedBySignal, outcome.output)
        XCTAssertEqual(outcome.status, 1, outcome.output)
        XCTAssertTrue(outcome.stderr.contains("the launcher of node 1 stopped answering"), outcome.output)
    }

    /// A scheduler's SIGTERM to node 1's launcher stops node 1's rank, and node 0's, naming the signal.
    func testAnInterruptedLauncherEndsTheJobOnEveryNode() throws {
        let megatron = try MegatronProcess.built()
        let port = try freeMasterPort()
        let node0 = try node(0, port: port, megatron, program: ["/bin/sleep", "60"])
        let node1 = try node(1, port: port, megatron, program: ["/bin/sleep", "60"])
        Thread.sleep(forTimeInterval: 1)
        kill(node1.pid, SIGTERM)
        let (first, second) = (node0.finish(timeout: 30), node1.finish(timeout: 30))
        XCTAssertEqual(second.status, 128 + SIGTERM, second.output)
        XCTAssertEqual(first.status, 1, first.output)
        XCTAssertTrue(first.stderr.contains("the launcher of node 1 was interrupted by signal 15"), first.output)
    }

    /// A rank on node 0 fails: node 1's launcher stops its rank and says which rank failed where.
    func testAFailedRankIsNamedOnTheOtherNode() throws {
        let megatron = try MegatronProcess.built()
        let port = try freeMasterPort()
        let script = "if [ $RANK = 0 ]; then sleep 0.5; exit 7; fi; sleep 60"
        let node0 = try node(0, port: port, megatron, program: ["/bin/sh", "-c", script])
        let node1 = try node(1, port: port, megatron, program: ["/bin/sh", "-c", script])
        let (first, second) = (node0.finish(timeout: 30), node1.finish(timeout: 30))
        XCTAssertEqual(first.status, 7, first.output)
        XCTAssertTrue(first.stderr.contains("rank 0 failed: exited with status 7"), first.output)
        XCTAssertEqual(second.status, 1, second.output)
        XCTAssertTrue(second.stderr.contains("rank 0 (node 0) exited with status 7"), second.output)
    }

    /// `megatron launch` killed with SIGKILL takes its `megatron` rank with it (the rank asked the kernel for
    /// that at start), so no rank is left training, and holding its GPU, without a launcher.
    func testARankDiesWithItsKilledLauncher() throws {
        let megatron = try MegatronProcess.built()
        let marker = "launcher-link-\(UUID().uuidString)"
        let launcher = try megatron.start(["launch", "--nproc-per-node", "1", "--exec", "--", megatron.binary.path,
                                           "pretrain-gpt", "--num-layers", "1", "--hidden-size", "32", "--num-attention-heads", "4",
                                           "--seq-length", "16", "--max-position-embeddings", "16", "--micro-batch-size", "2",
                                           "--train-iters", "100000", "--lr", "1e-3", "--log-interval", "100000", "--device", "cpu",
                                           "--tensorboard-dir", NSTemporaryDirectory() + marker])
        defer { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + marker) }
        let deadline = Date().addingTimeInterval(30)
        var rank: Int32?
        while rank == nil && Date() < deadline {
            rank = processes(mentioning: marker).first { $0 != launcher.pid }
            if rank == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        let trainer = try XCTUnwrap(rank, "the rank started")
        kill(launcher.pid, SIGKILL)
        _ = launcher.finish()
        let gone = Date().addingTimeInterval(10)
        while kill(trainer, 0) == 0 && !isZombie(trainer) && Date() < gone { Thread.sleep(forTimeInterval: 0.05) }
        XCTAssertTrue(kill(trainer, 0) != 0 || isZombie(trainer), "rank \(trainer) outlived its launcher")
    }

    /// A rank whose launcher exited before the rank got to follow it (it was re-parented already) ends at once
    /// with a message instead of training on without a launcher; one started through a wrapper script, the
    /// launcher further up its ancestors, runs.
    func testARankWhoseLauncherIsGoneEndsAndAWrappedRankRuns() throws {
        let megatron = try MegatronProcess.built()
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        try megatron.assertCleanFailure(["pretrain-gpt", "--help"], mentions: ["(pid \(gone.processIdentifier)) has exited"],
                                        environment: ["MEGATRON_LAUNCHER_PID": "\(gone.processIdentifier)"])
        let wrapped = Process()
        wrapped.executableURL = URL(fileURLWithPath: "/bin/sh")
        wrapped.arguments = ["-c", "\"$0\" pretrain-gpt --help > /dev/null", megatron.binary.path]
        wrapped.environment = ProcessInfo.processInfo.environment.merging(["MEGATRON_LAUNCHER_PID": "\(getpid())"]) { $1 }
        try wrapped.run()
        wrapped.waitUntilExit()
        XCTAssertEqual(wrapped.terminationStatus, 0, "a rank under a wrapper of its launcher runs")
    }

    /// A rank of a two-rank job whose other rank never comes waits in NCCL's join only as long as
    /// --distributed-timeout-minutes, then says what it waited for and exits 1 (one GPU is enough to see it).
    func testALoneRankEndsAtTheDistributedTimeout() throws {
        guard FileManager.default.fileExists(atPath: "/dev/nvidiactl") else { throw XCTSkip("needs a GPU (NCCL)") }
        let megatron = try MegatronProcess.built()
        let started = Date()
        let outcome = try megatron.run(["pretrain-gpt", "--num-layers", "1", "--hidden-size", "32", "--num-attention-heads", "4",
                                        "--seq-length", "16", "--max-position-embeddings", "16", "--micro-batch-size", "2",
                                        "--train-iters", "2", "--lr", "1e-3", "--distributed-timeout-minutes", "0.2"],
                                       environment: ["CUDA_VISIBLE_DEVICES": "0", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                                                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "\(try freeMasterPort() + 1)"],
                                       timeout: 120)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, outcome.output)
        XCTAssertFalse(outcome.killedBySignal, outcome.output)
        XCTAssertEqual(outcome.status, 1, outcome.output)
        XCTAssertTrue(outcome.stderr.contains("ncclCommInitRank(rank 0 of 2"), outcome.output)
        XCTAssertTrue(outcome.stderr.contains("has not completed after 12 s"), outcome.output)
    }

    /// Processes whose command line contains `text`.
    private func processes(mentioning text: String) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data, as: UTF8.self).contains(text)
        }
    }

    private func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }
}
