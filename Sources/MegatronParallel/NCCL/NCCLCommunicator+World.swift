import Foundation
import MegatronTensor

extension NCCLCommunicator {
    /// The world communicator of a job run one process per GPU (`megatron launch`, torchrun, SLURM): rank 0
    /// makes the NCCL id and serves it from the rendezvous store at MASTER_ADDR:MASTER_PORT; this process
    /// drives GPU `LOCAL_RANK`. Finding the store, joining, and every collective afterwards are held to
    /// `timeout` seconds (Megatron's `--distributed-timeout-minutes`): a `CollectiveWatchdog` ends the process,
    /// naming what it waited for, rather than let it wait forever for a rank that is gone.
    ///
    /// ```swift
    /// let world = try NCCLCommunicator.world(environment: DistributedEnvironment(ProcessInfo.processInfo.environment))
    /// ```
    public static func world(environment env: DistributedEnvironment, timeout: TimeInterval = 600) throws
        -> NCCLCommunicator {
        let store = try RendezvousStore(host: env.masterAddress, port: env.masterPort, isServer: env.rank == 0,
                                        connectTimeout: timeout)
        let key = "nccl-unique-id/world"
        if env.rank == 0 { try store.set(key, try NCCLUniqueID.make().bytes) }
        let id = try NCCLUniqueID(bytes: store.get(key, timeout: timeout))
        let device = try CUDAContext.shared(ordinal: env.localRank).device
        let watchdog = CollectiveWatchdog(rank: env.rank, timeout: timeout, onThreadStart: { try? device.makeCurrent() })
        // ncclCommInitRank returns once every rank has joined, so every rank has read the id and rank 0 may
        // close the store when this returns.
        return try NCCLCommunicator(id: id, rank: env.rank, size: env.worldSize, device: .cuda(env.localRank),
                                    watchdog: watchdog)
    }
}
