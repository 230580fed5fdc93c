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
            MASTER_PORT set. torchrun's options work in either spelling (--nproc_per_node), and so does a \
            torchrun line with the script: megatron launch --nproc_per_node 8 pretrain_gpt.py ARGS. When a rank fails the others get SIGTERM, then SIGKILL after --grace-period \
            seconds, and launch exits with the failed rank's status. Without a GPU, or with --threads, the \
            ranks are threads of one process sharing an in-process communicator. --exec runs an arbitrary \
            program per rank instead of a megatron subcommand.
            """)

    // torchrun's options, in both of its spellings (--nproc-per-node and --nproc_per_node). Numbers are parsed
    // `.unconditional`ly so that a negative one reaches `validate` and is named there, not read as a missing value.
    @Option(name: torchrun("nproc-per-node"), parsing: .unconditional, help: "Ranks (processes, one per GPU) on this node.")
    var nprocPerNode = 1
    @Option(name: torchrun("nnodes"), parsing: .unconditional, help: "Number of nodes (torchrun's MIN:MAX only with MIN = MAX).")
    var nnodes = "1"
    @Option(name: torchrun("node-rank"), parsing: .unconditional, help: "This node's index, 0..<nnodes.") var nodeRank = 0
    @Option(name: torchrun("master-addr"), help: "Address of node 0, where rank 0 serves the rendezvous store.") var masterAddr = "127.0.0.1"
    @Option(name: torchrun("master-port"), parsing: .unconditional,
            help: "Port of the rendezvous store (the launchers of several nodes also use the next port).")
    var masterPort = DistributedEnvironment.defaultPort
    @Option(name: torchrun("rdzv-endpoint"), help: "HOST[:PORT] of the rendezvous store (instead of --master-addr/--master-port).")
    var rdzvEndpoint: String?
    @Option(name: torchrun("rdzv-backend"), help: "c10d or static: both mean rank 0's store here.") var rdzvBackend = "static"
    @Option(name: torchrun("rdzv-id"), help: "Accepted; one job uses one store.") var rdzvId: String?
    @Option(name: torchrun("rdzv-conf"), help: "Accepted; the store has no settings.") var rdzvConf: String?
    @Flag(name: torchrun("standalone"), help: "One node with its own store on this machine.") var standalone = false
    @Option(name: torchrun("max-restarts"), parsing: .unconditional, help: "Only 0: a failed rank stops the job.") var maxRestarts = 0
    @Option(name: torchrun("monitor-interval"), help: "Accepted; ranks are watched continuously.") var monitorInterval: Double?
    @Option(name: torchrun("start-method"), help: "Accepted; ranks are started as processes.") var startMethod: String?
    @Option(parsing: .unconditional, help: "Seconds between SIGTERM and SIGKILL when stopping the ranks after a failure.")
    var gracePeriod = 10.0
    @Flag(help: "Run the ranks as threads of this process (the default when there is no GPU).") var threads = false
    @Flag(help: "The command after -- is a program to run per rank, not a megatron subcommand.") var exec = false
    @Flag(help: "Run thread ranks, record their communication and check it against NCCL's ordering rules (what would mismatch or hang on GPUs): a CPU dry run of a multi-GPU command at tiny sizes.")
    var checkNcclOrder = false
    @Argument(parsing: .captureForPassthrough,
              help: "The subcommand (or, with --exec, the program) and its arguments; pretrain_gpt.py is pretrain-gpt.")
    var command: [String] = []

    /// An option's names: torchrun's `--a-b` and `--a_b`.
    private static func torchrun(_ name: String) -> NameSpecification {
        name.contains("-") ? [.customLong(name), .customLong(name.replacingOccurrences(of: "-", with: "_"))] : [.customLong(name)]
    }

    func validate() throws {
        // The command is captured whole from the first word that is no option of launch's, help included.
        if let first = command.first, ["-h", "--help"].contains(first) { throw CleanExit.helpRequest(self) }
        guard !subcommand.isEmpty else { throw ValidationError("give the subcommand to run (after --)") }
        guard nprocPerNode >= 1 else { throw ValidationError("--nproc-per-node must be at least 1, got \(nprocPerNode)") }
        let nodes = try nodeCount()
        guard nodes >= 1 else { throw ValidationError("--nnodes must be at least 1, got \(nodes)") }
        guard (0..<nodes).contains(nodeRank) else {
            throw ValidationError("--node-rank must be in 0..<--nnodes (\(nodes)), got \(nodeRank)")
        }
        let store = try rendezvous()
        guard (1...65535).contains(store.port) else {
            throw ValidationError("--master-port must be a port number in 1...65535, got \(store.port)")
        }
        guard !store.address.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("--master-addr is empty; give the host of node 0")
        }
        guard gracePeriod.isFinite && gracePeriod >= 0 else {
            throw ValidationError("--grace-period must be a number of seconds >= 0, got \(gracePeriod)")
        }
        guard ["static", "c10d"].contains(rdzvBackend) else {
            throw ValidationError("--rdzv-backend \(rdzvBackend): only c10d and static (rank 0's store) are supported")
        }
        guard maxRestarts == 0 else {
            throw ValidationError("--max-restarts \(maxRestarts): restarting failed ranks is not supported; a failed rank stops the job")
        }
        if standalone && nodes != 1 { throw ValidationError("--standalone runs one node; --nnodes must be 1") }
        if threads && exec { throw ValidationError("--exec runs programs as processes; it cannot be used with --threads") }
        if threads && nodes != 1 { throw ValidationError("--threads runs one node; --nnodes must be 1") }
        if checkNcclOrder && (exec || nodes != 1) {
            throw ValidationError("--check-nccl-order records thread ranks: it needs one node and no --exec")
        }
    }

    /// `--nnodes N`, or torchrun's elastic `MIN:MAX` when both are the same.
    func nodeCount() throws -> Int {
        let bounds = nnodes.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard let first = bounds.first, let count = first, bounds.count <= 2, bounds.allSatisfy({ $0 == count }) else {
            throw ValidationError("--nnodes \(nnodes): give a node count (an elastic range MIN:MAX is not supported)")
        }
        return count
    }

    /// Address and port of rank 0's store: --rdzv-endpoint when given, else --master-addr and --master-port.
    func rendezvous() throws -> (address: String, port: Int) {
        guard let rdzvEndpoint else { return (masterAddr, masterPort) }
        let parts = rdzvEndpoint.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, !parts[0].isEmpty else { throw ValidationError("--rdzv-endpoint \(rdzvEndpoint): expected HOST[:PORT]") }
        guard parts.count == 2 else { return (String(parts[0]), masterPort) }
        guard let port = Int(parts[1]) else { throw ValidationError("--rdzv-endpoint \(rdzvEndpoint): the port must be a number") }
        return (String(parts[0]), port)
    }

    /// The command after the options, without a leading `--`, with torchrun's script `pretrain_gpt.py` as
    /// the subcommand it is.
    var subcommand: [String] {
        var words = command.first == "--" ? Array(command.dropFirst()) : command
        if !exec, let first = words.first, URL(fileURLWithPath: first).lastPathComponent == "pretrain_gpt.py" {
            words[0] = "pretrain-gpt"
        }
        return words
    }

    func run() throws {
        let nodes = try nodeCount()
        let useThreads = threads || checkNcclOrder || (!exec && nodes == 1 && !CUDAContext.isAvailable(ordinal: 0))
        if useThreads { return try runThreads() }
        if !exec, let gpus = try? CUDADevice.count(), nprocPerNode > gpus {
            throw ValidationError("--nproc-per-node \(nprocPerNode) starts one process per GPU, but this node has \(gpus); "
                + "use --nproc-per-node \(gpus) or less (or --threads to run the ranks as threads on the CPU)")
        }
        let executable = exec ? [] : [Launch.ownExecutable()]
        let store = try rendezvous()
        let plan = try LaunchPlan(processesPerNode: nprocPerNode, nodes: nodes, nodeRank: nodeRank,
                                  masterAddress: store.address, masterPort: store.port, command: executable + subcommand)
        let outcome = try ProcessLauncher(plan: plan, gracePeriod: gracePeriod).run()
        if outcome != .succeeded {
            FileHandle.standardError.write(Data("launch: \(outcome)\n".utf8))
            throw ExitCode(outcome.exitCode)
        }
    }

    /// Every rank parses and runs the subcommand on its own thread with its `RankContext` set.
    private func runThreads() throws {
        let arguments = subcommand
        // Parse once here so a usage error is reported once, in ArgumentParser's words, before any rank starts.
        _ = try Megatron.parseAsRoot(arguments)
        print("> launch: \(nprocPerNode) ranks as threads of this process")
        let log = checkNcclOrder ? CommunicationLog(worldSize: nprocPerNode) : nil
        do {
            try RankContext.runThreads(worldSize: nprocPerNode, log: log) { _ in
                var subcommand = try Megatron.parseAsRoot(arguments)
                try subcommand.run()
            }
        } catch let failure as ThreadRankFailure {
            FileHandle.standardError.write(Data("launch: rank \(failure.rank) failed: \(Megatron.message(for: failure.error))\n".utf8))
            throw ExitCode.failure
        }
        guard let log else { return }
        do {
            print("> launch: NCCL order check: \(try NCCLOrderCheck.check(log))")
        } catch let error as CommunicationOrderError {
            FileHandle.standardError.write(Data("launch: NCCL order check failed: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// This program's path (children re-execute it).
    private static func ownExecutable() -> String {
        let resolved = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        return resolved == "/proc/self/exe" ? CommandLine.arguments[0] : resolved
    }
}
