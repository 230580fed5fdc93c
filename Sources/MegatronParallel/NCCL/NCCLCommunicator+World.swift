import Foundation

extension NCCLCommunicator {
    /// The world communicator of a job run one process per GPU (`megatron launch`, torchrun, SLURM): rank 0
    /// makes the NCCL id and serves it from the rendezvous store at MASTER_ADDR:MASTER_PORT; this process
    /// drives GPU `LOCAL_RANK`.
    ///
    /// ```swift
    /// let world = try NCCLCommunicator.world(environment: DistributedEnvironment(ProcessInfo.processInfo.environment))
    /// ```
    public static func world(environment env: DistributedEnvironment, timeout: TimeInterval = 300) throws
        -> NCCLCommunicator {
        let store = try RendezvousStore(host: env.masterAddress, port: env.masterPort, isServer: env.rank == 0,
                                        connectTimeout: timeout)
        let key = "nccl-unique-id/world"
        if env.rank == 0 { try store.set(key, try NCCLUniqueID.make().bytes) }
        let id = try NCCLUniqueID(bytes: store.get(key, timeout: timeout))
        // ncclCommInitRank returns once every rank has joined, so every rank has read the id and rank 0 may
        // close the store when this returns.
        return try NCCLCommunicator(id: id, rank: env.rank, size: env.worldSize, device: .cuda(env.localRank))
    }
}
