import Foundation

/// Where this process sits in a distributed job, read from the launcher's environment: torchrun's
/// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, when those are absent, SLURM's
/// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, first host of SLURM_NODELIST; MASTER_PORT or 29500).
///
/// ```swift
/// let env = try DistributedEnvironment(ProcessInfo.processInfo.environment)
/// // env.rank, env.worldSize, env.localRank, env.masterAddress, env.masterPort
/// ```
public struct DistributedEnvironment: Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    public var localRank: Int
    public var masterAddress: String
    public var masterPort: Int

    public static let defaultPort = 29500

    public init(rank: Int, worldSize: Int, localRank: Int, masterAddress: String, masterPort: Int) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
    }

    /// A single process: rank 0 of 1 on localhost.
    public static let single = DistributedEnvironment(rank: 0, worldSize: 1, localRank: 0,
                                                      masterAddress: "127.0.0.1", masterPort: defaultPort)

    /// Parses `environment`; with neither torchrun's nor SLURM's variables, a single process (on the GPU
    /// `LOCAL_RANK` names, if set). Every malformed or inconsistent variable is an error naming it.
    public init(_ environment: [String: String]) throws {
        func integer(_ name: String, default value: Int? = nil) throws -> Int {
            guard let text = environment[name] else {
                if let value { return value }
                throw RendezvousError("environment variable \(name) is not set")
            }
            guard let number = Int(text.trimmingCharacters(in: .whitespaces)), number >= 0 else {
                throw RendezvousError("environment variable \(name) must be a non-negative integer, got '\(text)'")
            }
            return number
        }
        let names: (rank: String, world: String, local: String)
        if environment["RANK"] != nil || environment["WORLD_SIZE"] != nil {
            names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
            self.init(rank: try integer("RANK"), worldSize: try integer("WORLD_SIZE"),
                      localRank: try integer("LOCAL_RANK", default: 0),
                      masterAddress: environment["MASTER_ADDR"] ?? "127.0.0.1",
                      masterPort: try integer("MASTER_PORT", default: Self.defaultPort))
        } else if environment["SLURM_PROCID"] != nil {
            names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
            let master = try environment["MASTER_ADDR"]
                ?? environment["SLURM_NODELIST"].map { try Self.firstHost(ofNodeList: $0) }
                ?? "127.0.0.1"
            self.init(rank: try integer("SLURM_PROCID"), worldSize: try integer("SLURM_NTASKS"),
                      localRank: try integer("SLURM_LOCALID", default: 0), masterAddress: master,
                      masterPort: try integer("MASTER_PORT", default: Self.defaultPort))
        } else {
            self = .single
            localRank = try integer("LOCAL_RANK", default: 0)
            return
        }
        try check(names, localWorldSize: environment["LOCAL_WORLD_SIZE"] == nil ? nil : try integer("LOCAL_WORLD_SIZE"))
    }

    /// The variables against each other, each named as it was read.
    private func check(_ names: (rank: String, world: String, local: String), localWorldSize: Int?) throws {
        guard worldSize >= 1 else { throw RendezvousError("environment variable \(names.world) must be at least 1, got 0") }
        guard rank < worldSize else {
            throw RendezvousError("\(names.rank) (\(rank)) must be less than \(names.world) (\(worldSize))")
        }
        if let localWorldSize {
            guard localWorldSize >= 1, localRank < localWorldSize else {
                throw RendezvousError("\(names.local) (\(localRank)) must be less than LOCAL_WORLD_SIZE (\(localWorldSize))")
            }
        }
        guard localRank < worldSize else {
            throw RendezvousError("\(names.local) (\(localRank)) must be less than \(names.world) (\(worldSize))")
        }
        guard (1...65535).contains(masterPort) else {
            throw RendezvousError("environment variable MASTER_PORT must be a port number in 1...65535, got \(masterPort)")
        }
        guard !masterAddress.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw RendezvousError("environment variable MASTER_ADDR is empty; set it to the host of rank 0")
        }
    }

    /// The first host of a SLURM node list: "node[003-005,7],gpu1" -> "node003"; "a,b" -> "a".
    public static func firstHost(ofNodeList list: String) throws -> String {
        let trimmed = list.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw RendezvousError("SLURM_NODELIST is empty") }
        let bracket = trimmed.firstIndex(of: "[")
        let comma = trimmed.firstIndex(of: ",")
        if let bracket, comma.map({ bracket < $0 }) ?? true {
            guard let close = trimmed[bracket...].firstIndex(of: "]") else {
                throw RendezvousError("SLURM_NODELIST '\(list)' has an unclosed '['")
            }
            let prefix = trimmed[..<bracket]
            let firstRange = trimmed[trimmed.index(after: bracket)..<close].split(separator: ",").first ?? ""
            let first = firstRange.split(separator: "-").first.map(String.init) ?? ""
            guard !first.isEmpty, first.allSatisfy(\.isNumber) else {
                throw RendezvousError("SLURM_NODELIST '\(list)' has a bad range '\(firstRange)'")
            }
            // Zero padding is kept: node[003-005] names node003.
            return prefix + first
        }
        return String(trimmed[..<(comma ?? trimmed.endIndex)])
    }
}
