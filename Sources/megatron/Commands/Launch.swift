import ArgumentParser
import Foundation
import MegatronCUDA
import MegatronParallel
import MegatronTensor

/// `megatron launch`: torchrun for this binary. Starts one rank per local GPU, each a copy of this program
/// running the given subcommand with torchrun's environment, and stops them all when one fails. Without a
/// GPU (or with --threads) the ranks are threads of this process over `ThreadCommunicator`, each seeing its
/// `RankContext`.
struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a subcommand on several ranks (torchrun for this binary).",
        discussion: """
            megatron launch --nproc-per-node 8 -- pretrain-gpt --tensor-model-parallel-size 2 ... starts 8 \
            processes with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR and \
            MASTER_PORT set. When a rank fails the others get SIGTERM, then SIGKILL after --grace-period \
            seconds, and launch exits with the failed rank's status. Without a GPU, or with --threads, the \
            ranks are threads of one process sharing an in-process communicator. --exec runs an arbitrary \
            program per rank instead of a megatron subcommand.
            """)

    // Numbers are parsed `.unconditional`ly so that a negative one reaches `validate` and is named there,
    // rather than read as a missing value.
    @Option(parsing: .unconditional, help: "Ranks (processes, one per GPU) on this node.") var nprocPerNode = 1
    @Option(parsing: .unconditional, help: "Number of nodes.") var nnodes = 1
    @Option(parsing: .unconditional, help: "This node's index, 0..<nnodes.") var nodeRank = 0
    @Option(help: "Address of node 0, where rank 0 serves the rendezvous store.") var masterAddr = "127.0.0.1"
    @Option(parsing: .unconditional, help: "Port of the rendezvous store.") var masterPort = DistributedEnvironment.defaultPort
    @Option(parsing: .unconditional, help: "Seconds between SIGTERM and SIGKILL when stopping the ranks after a failure.")
    var gracePeriod = 10.0
    @Flag(help: "Run the ranks as threads of this process (the default when there is no GPU).") var threads = false
    @Flag(help: "The command after -- is a program to run per rank, not a megatron subcommand.") var exec = false
    @Argument(parsing: .postTerminator, help: "The subcommand (or, with --exec, the program) and its arguments.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the subcommand to run after --") }
        guard nprocPerNode >= 1 else { throw ValidationError("--nproc-per-node must be at least 1, got \(nprocPerNode)") }
        guard nnodes >= 1 else { throw ValidationError("--nnodes must be at least 1, got \(nnodes)") }
        guard (0..<nnodes).contains(nodeRank) else {
            throw ValidationError("--node-rank must be in 0..<--nnodes (\(nnodes)), got \(nodeRank)")
        }
        guard (1...65535).contains(masterPort) else {
            throw ValidationError("--master-port must be a port number in 1...65535, got \(masterPort)")
        }
        guard !masterAddr.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("--master-addr is empty; give the host of node 0")
        }
        guard gracePeriod.isFinite && gracePeriod >= 0 else {
            throw ValidationError("--grace-period must be a number of seconds >= 0, got \(gracePeriod)")
        }
        if threads && exec { throw ValidationError("--exec runs programs as processes; it cannot be used with --threads") }
        if threads && nnodes != 1 { throw ValidationError("--threads runs one node; --nnodes must be 1") }
    }

    func run() throws {
        let useThreads = threads || (!exec && nnodes == 1 && !CUDAContext.isAvailable(ordinal: 0))
        if useThreads { return try runThreads() }
        if !exec, let gpus = try? CUDADevice.count(), nprocPerNode > gpus {
            throw ValidationError("--nproc-per-node \(nprocPerNode) starts one process per GPU, but this node has \(gpus); "
                + "use --nproc-per-node \(gpus) or less (or --threads to run the ranks as threads on the CPU)")
        }
        let executable = exec ? [] : [Launch.ownExecutable()]
        let plan = try LaunchPlan(processesPerNode: nprocPerNode, nodes: nnodes, nodeRank: nodeRank,
                                  masterAddress: masterAddr, masterPort: masterPort, command: executable + command)
        let outcome = try ProcessLauncher(plan: plan, gracePeriod: gracePeriod).run()
        if outcome != .succeeded {
            FileHandle.standardError.write(Data("launch: \(outcome)\n".utf8))
            throw ExitCode(outcome.exitCode)
        }
    }

    /// Every rank parses and runs the subcommand on its own thread with its `RankContext` set.
    private func runThreads() throws {
        let arguments = command
        // Parse once here so a usage error is reported once, in ArgumentParser's words, before any rank starts.
        _ = try Megatron.parseAsRoot(arguments)
        print("> launch: \(nprocPerNode) ranks as threads of this process")
        do {
            try RankContext.runThreads(worldSize: nprocPerNode) { _ in
                var subcommand = try Megatron.parseAsRoot(arguments)
                try subcommand.run()
            }
        } catch let failure as ThreadRankFailure {
            FileHandle.standardError.write(Data("launch: rank \(failure.rank) failed: \(Megatron.message(for: failure.error))\n".utf8))
            throw ExitCode.failure
        }
    }

    /// This program's path (children re-execute it).
    private static func ownExecutable() -> String {
        let resolved = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        return resolved == "/proc/self/exe" ? CommandLine.arguments[0] : resolved
    }
}
