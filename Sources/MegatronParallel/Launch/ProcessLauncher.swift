import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `megatron launch` starts on this node: `processesPerNode` copies of `command`, one per local rank,
/// each with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
/// MASTER_ADDR, MASTER_PORT).
public struct LaunchPlan: Sendable, Equatable {
    public var processesPerNode: Int
    public var nodes: Int
    public var nodeRank: Int
    public var masterAddress: String
    public var masterPort: Int
    /// Executable path and arguments.
    public var command: [String]

    public init(processesPerNode: Int, nodes: Int = 1, nodeRank: Int = 0, masterAddress: String = "127.0.0.1",
                masterPort: Int = DistributedEnvironment.defaultPort, command: [String]) throws {
        guard processesPerNode >= 1, nodes >= 1, (0..<nodes).contains(nodeRank) else {
            throw RendezvousError("launch needs --nproc-per-node >= 1, --nnodes >= 1 and 0 <= --node-rank < --nnodes; "
                + "got \(processesPerNode), \(nodes), \(nodeRank)")
        }
        guard !command.isEmpty else { throw RendezvousError("launch needs a command after --") }
        self.processesPerNode = processesPerNode
        self.nodes = nodes
        self.nodeRank = nodeRank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
        self.command = command
    }

    public var worldSize: Int { processesPerNode * nodes }

    /// Where node 0's launcher serves the store the launchers of a job of several nodes share (the ranks' own
    /// store is at `masterPort`).
    public var controlPort: Int { masterPort + 1 }

    /// Local rank `localRank`'s place in the job.
    public func environment(localRank: Int) -> DistributedEnvironment {
        DistributedEnvironment(rank: nodeRank * processesPerNode + localRank, worldSize: worldSize,
                               localRank: localRank, masterAddress: masterAddress, masterPort: masterPort)
    }

    /// `base` plus the launcher variables of `localRank`.
    public func variables(localRank: Int, base: [String: String]) -> [String: String] {
        let env = environment(localRank: localRank)
        var variables = base
        variables["RANK"] = String(env.rank)
        variables["WORLD_SIZE"] = String(worldSize)
        variables["LOCAL_RANK"] = String(localRank)
        variables["LOCAL_WORLD_SIZE"] = String(processesPerNode)
        variables["GROUP_RANK"] = String(nodeRank)
        variables["MASTER_ADDR"] = masterAddress
        variables["MASTER_PORT"] = String(masterPort)
        if variables["NCCL_NVLS_ENABLE"] == nil { variables["NCCL_NVLS_ENABLE"] = "0" }
        return variables
    }
}

/// How a launch ended.
public enum LaunchOutcome: Equatable, CustomStringConvertible {
    case succeeded
    /// The first rank to fail, how (exit status or signal), and the status the launcher exits with
    /// (the rank's exit status, or 128 + signal).
    case failed(rank: Int, reason: String, exitCode: Int32)
    /// The launcher got SIGINT or SIGTERM and stopped the ranks.
    case interrupted(signal: Int32)
    /// Another node's launcher reported why the job must end (or could no longer be reached), and this node's
    /// ranks were stopped.
    case stoppedByJob(reason: String)

    public var exitCode: Int32 {
        switch self {
        case .succeeded: 0
        case .failed(_, _, let code): code
        case .interrupted(let signal): 128 + signal
        case .stoppedByJob: 1
        }
    }

    public var description: String {
        switch self {
        case .succeeded: "all ranks succeeded"
        case .failed(let rank, let reason, _): "rank \(rank) failed: \(reason)"
        case .interrupted(let signal): "interrupted by signal \(signal); the ranks were stopped"
        case .stoppedByJob(let reason): "the job ended on another node (\(reason)); this node's ranks were stopped"
        }
    }
}

/// Runs a `LaunchPlan`'s processes and watches them: when one fails, the others get SIGTERM, then SIGKILL
/// after `gracePeriod` seconds, so a crashed rank never leaves the job hanging in a collective. Each child
/// leads its own process group and signals go to the group, so what a rank started goes with it; a rank that
/// is a `megatron` subcommand also dies with its launcher (`LauncherLink`). With several nodes, the launchers
/// end the job together through a `JobCoordinator`: a failure on one node stops the ranks of all of them.
///
/// ```swift
/// let plan = try LaunchPlan(processesPerNode: 8, command: ["/proc/self/exe", "pretrain-gpt", ...])
/// let outcome = try ProcessLauncher(plan: plan).run()
/// exit(outcome.exitCode)
/// ```
public struct ProcessLauncher {
    public var plan: LaunchPlan
    public var gracePeriod: TimeInterval
    public var pollInterval: TimeInterval = 0.05
    /// How often a launcher of a several-node job asks the others' news.
    public var jobPollInterval: TimeInterval = 0.25
    /// Seconds every node's launcher has to join a several-node job (as the ranks' rendezvous allows).
    public var joinTimeout: TimeInterval = 300
    /// Whether SIGINT and SIGTERM sent to the launcher stop the ranks (they lead their own process groups,
    /// so a terminal's Ctrl-C or a scheduler's SIGTERM would not reach them otherwise).
    public var forwardsInterrupts = true

    public init(plan: LaunchPlan, gracePeriod: TimeInterval = 10) {
        self.plan = plan
        self.gracePeriod = gracePeriod
    }

    public func run(baseEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws -> LaunchOutcome {
        let interrupts = forwardsInterrupts ? InterruptWatch(signals: [SIGINT, SIGTERM]) : nil
        defer { interrupts?.restore() }
        let job = plan.nodes > 1 ? try JobCoordinator(plan: plan, joinTimeout: joinTimeout) : nil
        var base = baseEnvironment
        base[LauncherLink.variable] = String(getpid())
        var children: [ChildProcess] = []
        for localRank in 0..<plan.processesPerNode {
            do {
                children.append(try ChildProcess(command: plan.command, environment: plan.variables(localRank: localRank, base: base)))
            } catch {
                let reason = "cannot start local rank \(localRank) of node \(plan.nodeRank): \(error)"
                job?.post(reason)
                stop(children)
                job?.finish(grace: gracePeriod, pollInterval: jobPollInterval)
                throw RendezvousError(reason)
            }
        }
        let outcome = watch(children, interrupts: interrupts, job: job)
        job?.finish(grace: gracePeriod + 2 * jobPollInterval, pollInterval: jobPollInterval)
        return outcome
    }

    /// Polls until every child has exited, one has failed, or (several nodes) the job ended elsewhere; a
    /// failure here is posted to the other nodes, and the rest of this node's ranks are stopped.
    private func watch(_ children: [ChildProcess], interrupts: InterruptWatch?, job: JobCoordinator?) -> LaunchOutcome {
        var lastJobPoll = Date.distantPast
        while true {
            if let signal = interrupts?.received {
                job?.post("the launcher of node \(plan.nodeRank) was interrupted by signal \(signal)")
                stop(children)
                return .interrupted(signal: signal)
            }
            for child in children { child.poll() }
            if let failed = children.firstIndex(where: { $0.status.map { $0 != .exited(0) } ?? false }) {
                let (reason, code) = ProcessLauncher.describe(children[failed].status!)
                let rank = plan.environment(localRank: failed).rank
                job?.post("rank \(rank) (node \(plan.nodeRank)) \(reason)")
                stop(children)
                return .failed(rank: rank, reason: reason, exitCode: code)
            }
            if children.allSatisfy({ $0.status != nil }) { return .succeeded }
            if let job, Date().timeIntervalSince(lastJobPoll) >= jobPollInterval {
                lastJobPoll = Date()
                if let reason = job.failure() {
                    stop(children)
                    return .stoppedByJob(reason: reason)
                }
            }
            Thread.sleep(forTimeInterval: pollInterval)
        }
    }

    /// SIGTERM to every running child's process group, SIGKILL to those still running after the grace period.
    private func stop(_ children: [ChildProcess]) {
        for child in children where child.status == nil { child.signal(SIGTERM) }
        let deadline = Date(timeIntervalSinceNow: gracePeriod)
        while Date() < deadline {
            for child in children { child.poll() }
            if children.allSatisfy({ $0.status != nil }) { break }
            Thread.sleep(forTimeInterval: pollInterval)
        }
        for child in children where child.status == nil { child.signal(SIGKILL) }
        for child in children { child.waitForExit() }
    }

    private static func describe(_ status: ChildProcess.Status) -> (String, Int32) {
        switch status {
        case .exited(let code): ("exited with status \(code)", code)
        case .signaled(let signal): ("killed by signal \(signal) (\(signalName(signal)))", 128 + signal)
        }
    }

    private static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGINT: "SIGINT"
        case SIGBUS: "SIGBUS"
        case SIGILL: "SIGILL"
        default: "signal \(signal)"
        }
    }
}

/// Catches `signals` (instead of dying of them) while a launch runs, and remembers the first one received.
private final class InterruptWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Int32?
    private var sources: [DispatchSourceSignal] = []

    init(signals: [Int32]) {
        for number in signals {
            sources.append(catchSignal(number) { [weak self] in self?.record(number) })
        }
    }

    var received: Int32? { lock.withLock { first } }

    private func record(_ number: Int32) { lock.withLock { if first == nil { first = number } } }

    /// Stops watching (the signals stay caught: see `catchSignal`).
    func restore() {
        for source in sources { source.cancel() }
    }
}
