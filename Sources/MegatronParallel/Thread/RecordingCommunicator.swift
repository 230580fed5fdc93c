import MegatronTensor

/// A thread-rank communicator that writes every operation and every wait into a `CommunicationLog` before
/// running it on its `ThreadCommunicator`; the groups split from it record too. Runs give the same results as
/// on the bare thread communicator; the log is what `NCCLOrderCheck` replays.
///
/// Uneven all-to-alls go through the protocol's `batchSendRecv` form, as on NCCL, so they are logged as the
/// grouped transfers NCCL would run.
///
/// ```swift
/// let log = CommunicationLog(worldSize: 2)
/// _ = try ThreadCommunicator.run(worldSize: 2) { world in
///     let comm = RecordingCommunicator(world: world, log: log)
///     try comm.allReduce(x, op: .sum).wait()
/// }
/// ```
public final class RecordingCommunicator: Communicator {
    public let inner: ThreadCommunicator
    let log: CommunicationLog
    /// The same on every member of the group: the parent's name, its split count and the color.
    let group: String
    private var splits = 0

    /// Records the operations of `world` (and of the groups split from it) into `log`.
    public convenience init(world: ThreadCommunicator, log: CommunicationLog) {
        self.init(inner: world, log: log, group: "world")
    }

    private init(inner: ThreadCommunicator, log: CommunicationLog, group: String) {
        self.inner = inner
        self.log = log
        self.group = group
    }

    public var rank: Int { inner.rank }
    public var size: Int { inner.size }
    private var worldRank: Int { inner.worldRanks[inner.rank] }

    public func allReduce(_ tensor: Tensor, op: ReduceOp) throws -> CollectiveWork {
        try record(.collective("allReduce(\(op)) of \(tensor.count) \(tensor.dtype)")) { try inner.allReduce(tensor, op: op) }
    }

    public func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        try record(.collective("allGather of \(input.count) \(input.dtype)")) { try inner.allGather(input, into: output) }
    }

    public func reduceScatter(_ input: Tensor, into output: Tensor, op: ReduceOp) throws -> CollectiveWork {
        try record(.collective("reduceScatter(\(op)) of \(input.count) \(input.dtype)")) {
            try inner.reduceScatter(input, into: output, op: op)
        }
    }

    public func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        try record(.collective("broadcast(root: \(root)) of \(tensor.count) \(tensor.dtype)")) { try inner.broadcast(tensor, root: root) }
    }

    /// NCCL's equal all-to-all is a group of sends and receives with every rank: every rank calls it alike.
    public func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        try record(.collective("allToAll of \(input.count) \(input.dtype)")) { try inner.allToAll(input, into: output) }
    }

    public func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork {
        try record(.transfers([transfer(.send(tensor, to: peer))])) { try inner.send(tensor, to: peer) }
    }

    public func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork {
        try record(.transfers([transfer(.recv(into: tensor, from: peer))])) { try inner.recv(into: tensor, from: peer) }
    }

    public func batchSendRecv(_ transfers: [PointToPoint]) throws -> CollectiveWork {
        try record(.transfers(transfers.map(transfer))) { try inner.batchSendRecv(transfers) }
    }

    /// On NCCL an all-reduce waited for on the host.
    public func barrier() throws {
        let id = log.issue(rank: worldRank, group: group, groupRanks: inner.worldRanks, groupRank: rank, kind: .collective("barrier"))
        log.waited(rank: worldRank, operation: id)
        log.hostSynced(rank: worldRank)
        try inner.barrier()
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        _ = log.issue(rank: worldRank, group: group, groupRanks: inner.worldRanks, groupRank: rank, kind: .split)
        let child = try inner.splitThreads(color: color, key: key)
        splits += 1
        return RecordingCommunicator(inner: child, log: log, group: "\(group).\(splits):\(color)")
    }

    private func transfer(_ transfer: PointToPoint) -> CommunicationLog.Transfer {
        switch transfer {
        case .send(let tensor, let peer): CommunicationLog.Transfer(isSend: true, peer: peer, count: tensor.count, dtype: tensor.dtype)
        case .recv(let tensor, let peer): CommunicationLog.Transfer(isSend: false, peer: peer, count: tensor.count, dtype: tensor.dtype)
        }
    }

    /// Logs the operation, then runs it (a collective blocks in the thread backend until every rank comes).
    private func record(_ kind: CommunicationLog.Kind, _ run: () throws -> CollectiveWork) throws -> CollectiveWork {
        let id = log.issue(rank: worldRank, group: group, groupRanks: inner.worldRanks, groupRank: rank, kind: kind)
        return RecordedWork(inner: try run(), log: log, rank: worldRank, operation: id)
    }
}

/// A work handle whose waits are logged.
private final class RecordedWork: CollectiveWork {
    let inner: CollectiveWork
    let log: CommunicationLog
    let rank: Int, operation: Int

    init(inner: CollectiveWork, log: CommunicationLog, rank: Int, operation: Int) {
        self.inner = inner
        self.log = log
        self.rank = rank
        self.operation = operation
    }

    func wait() throws {
        log.waited(rank: rank, operation: operation)
        try inner.wait()
    }
}
