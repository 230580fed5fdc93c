import Foundation
import MegatronTensor

/// A `Communicator` whose ranks are threads of one process, for CPU tensors: the backend of CPU runs and of
/// the parallel layers' tests.
///
/// Collectives complete before they return (their work handle's `wait()` does nothing). Reductions add in
/// rank order, so every rank gets bit-identical results; 16-bit types reduce in fp32. `send` is buffered and
/// returns at once; `recv` takes its place in line at once and blocks in its work's `wait()` until the
/// matching message arrives (the n-th receive from a peer gets the n-th message it sent), so receives can be
/// posted ahead of their use as on NCCL.
///
/// ```swift
/// let sums = try ThreadCommunicator.run(worldSize: 4) { comm in
///     let x = Tensor(shape: [2], values: [Float(comm.rank), 1])
///     try comm.allReduce(x, op: .sum).wait()
///     return x.floats()                                  // [6, 4] on every rank
/// }
/// ```
public final class ThreadCommunicator: Communicator {
    public let rank: Int
    public var size: Int { group.size }
    /// World rank of each rank of this group, in group order.
    public var worldRanks: [Int] { group.worldRanks }

    private let world: ThreadWorld
    private let group: ThreadGroupState
    /// Number of collectives this rank has entered on this group: the key of the next round.
    private var sequence = 0

    init(world: ThreadWorld, group: ThreadGroupState, rank: Int) {
        self.world = world
        self.group = group
        self.rank = rank
    }

    /// Runs `body` on `worldSize` threads, each with its rank's world communicator, and returns the results
    /// in rank order. If a body throws, ranks blocked in collectives fail instead of waiting, and `run` throws
    /// the first failure as a `ThreadRankFailure` naming its rank. A collective that waits longer than
    /// `timeout` seconds for the other ranks throws (a rank skipped it or called another one).
    public static func run<T>(worldSize: Int, timeout: TimeInterval = 300,
                              _ body: @escaping (ThreadCommunicator) throws -> T) throws -> [T] {
        precondition(worldSize >= 1, "world size must be at least 1, got \(worldSize)")
        let world = ThreadWorld(size: worldSize, timeout: timeout)
        let group = ThreadGroupState(worldRanks: Array(0..<worldSize))
        let results = ResultSlots<T>(count: worldSize)
        let finished = DispatchGroup()
        for rank in 0..<worldSize {
            finished.enter()
            let thread = Thread {
                defer { finished.leave() }
                do {
                    results.set(rank, try body(ThreadCommunicator(world: world, group: group, rank: rank)))
                    world.returned(rank: rank)
                } catch {
                    world.fail(rank: rank, error: error)
                }
            }
            thread.name = "rank \(rank)"
            // Model code recurses through deep module trees; the default 512 KiB secondary-thread stack is tight.
            thread.stackSize = 16 << 20
            thread.start()
        }
        finished.wait()
        if let failure = world.firstFailure { throw failure }
        return results.values()
    }

    // MARK: Collectives

    public func allReduce(_ tensor: Tensor, op: ReduceOp) throws -> CollectiveWork {
        let operation = "allReduce(\(op))"
        let mine = try HostBuffer(tensor, operation: operation)
        let all = try exchange(operation, mine) { $0 }
        try checkSame(all, operation: operation)
        HostBuffer.write(try HostReduction.reduce(all, op: op, operation: operation)[...], into: tensor)
        return CompletedWork()
    }

    public func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        let operation = "allGather"
        let mine = try HostBuffer(input, operation: operation)
        try checkRows(output, rowsOf: input, factor: size, operation: operation)
        let all = try exchange(operation, mine) { $0 }
        try checkSame(all, operation: operation)
        HostBuffer.write(all.flatMap(\.bytes)[...], into: output)
        return CompletedWork()
    }

    public func reduceScatter(_ input: Tensor, into output: Tensor, op: ReduceOp) throws -> CollectiveWork {
        let operation = "reduceScatter(\(op))"
        let mine = try HostBuffer(input, operation: operation)
        try checkRows(input, rowsOf: output, factor: size, operation: operation)
        let all = try exchange(operation, mine) { $0 }
        try checkSame(all, operation: operation)
        let reduced = try HostReduction.reduce(all, op: op, operation: operation)
        let blockBytes = reduced.count / size
        HostBuffer.write(reduced[(rank * blockBytes)..<((rank + 1) * blockBytes)], into: output)
        return CompletedWork()
    }

    public func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        let operation = "broadcast(root: \(root))"
        try checkPeer(root, operation: operation)
        let mine = try HostBuffer(tensor, operation: operation)
        let all = try exchange(operation, mine) { $0 }
        try checkSame(all, operation: operation)
        if rank != root { HostBuffer.write(all[root].bytes[...], into: tensor) }
        return CompletedWork()
    }

    public func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        let operation = "allToAll"
        let mine = try HostBuffer(input, operation: operation)
        guard input.shape == output.shape, input.dtype == output.dtype, input.shape.first.map({ $0 % size == 0 }) ?? false
        else {
            throw CommunicatorError(operation, "input \(input.shape) \(input.dtype) and output \(output.shape) "
                + "\(output.dtype) must match, with dimension 0 divisible by the group size \(size)")
        }
        let all = try exchange(operation, mine) { $0 }
        try checkSame(all, operation: operation)
        let blockBytes = mine.bytes.count / size
        let gathered = all.flatMap { $0.bytes[(rank * blockBytes)..<((rank + 1) * blockBytes)] }
        HostBuffer.write(gathered[...], into: output)
        return CompletedWork()
    }

    public func barrier() throws {
        _ = try exchange("barrier", ()) { _ in () }
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        try splitThreads(color: color, key: key)
    }

    /// `split` with the concrete type, for callers that want `worldRanks`.
    public func splitThreads(color: Int, key: Int) throws -> ThreadCommunicator {
        // Ranks pass different colors and keys to the same collective: the round is named by the operation alone.
        let (state, newRank) = try exchange("split", (color: color, key: key)) { round, entries in
            let members = entries.indices.filter { entries[$0].color == color }
                .sorted { (entries[$0].key, $0) < (entries[$1].key, $1) }
            let state = round.shared[color] as? ThreadGroupState
                ?? ThreadGroupState(worldRanks: members.map { group.worldRanks[$0] })
            round.shared[color] = state
            return (state, members.firstIndex(of: rank)!)
        }
        return ThreadCommunicator(world: world, group: state, rank: newRank)
    }

    // MARK: Point to point

    public func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork {
        let operation = "send(to: \(peer))"
        try checkPeer(peer, operation: operation)
        let message = try HostBuffer(tensor, operation: operation)
        world.condition.lock()
        defer { world.condition.unlock() }
        let key = ThreadMailboxKey(source: rank, destination: peer)
        var mailbox = group.mailboxes.removeValue(forKey: key) ?? ThreadMailbox()
        mailbox.messages[mailbox.sent] = message
        mailbox.sent += 1
        group.mailboxes[key] = mailbox
        world.condition.broadcast()
        return CompletedWork()
    }

    public func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork {
        let operation = "recv(from: \(peer))"
        try checkPeer(peer, operation: operation)
        try HostBuffer.check(tensor, operation: operation)
        let key = ThreadMailboxKey(source: peer, destination: rank)
        world.condition.lock()
        defer { world.condition.unlock() }
        let ticket = group.mailboxes[key]?.posted ?? 0
        group.mailboxes[key, default: ThreadMailbox()].posted += 1
        return ThreadReceive { [world, group, rank] in
            world.condition.lock()
            defer { world.condition.unlock() }
            try world.wait(operation: "\(operation) on rank \(rank)", ready: { group.mailboxes[key]?.messages[ticket] != nil },
                           waitingFor: { "a message from rank \(peer) (world rank \(group.worldRanks[peer]))" })
            let message = group.mailboxes[key]!.messages.removeValue(forKey: ticket)!
            guard message.shape == tensor.shape, message.dtype == tensor.dtype else {
                throw CommunicatorError(operation, "rank \(peer) sent \(message.shape) \(message.dtype), "
                    + "rank \(rank) receives into \(tensor.shape) \(tensor.dtype)")
            }
            HostBuffer.write(message.bytes[...], into: tensor)
        }
    }

    // MARK: Rendezvous

    private func exchange<Value>(_ operation: String, _ value: Value) throws -> [Value] {
        try exchange(operation, value) { _, all in all }
    }

    private func exchange<Value, Result>(_ operation: String, _ value: Value,
                                         _ finish: ([Value]) throws -> Result) throws -> Result {
        try exchange(operation, value) { _, all in try finish(all) }
    }

    /// Deposits `value` in this collective's round, waits for every rank of the group, then runs `finish`
    /// (under the lock, so ranks can build shared objects in the round) with all values in rank order.
    private func exchange<Value, Result>(_ operation: String, _ value: Value,
                                         _ finish: (ThreadRound, [Value]) throws -> Result) throws -> Result {
        world.condition.lock()
        defer { world.condition.unlock() }
        let key = sequence
        sequence += 1
        let round = group.rounds[key] ?? ThreadRound(operation: operation, size: size)
        group.rounds[key] = round
        guard round.operation == operation else {
            throw CommunicatorError(operation, "rank \(rank) called \(operation) as collective #\(key) of its group "
                + "\(group.worldRanks) while another rank called \(round.operation)")
        }
        round.contributions[rank] = value
        round.arrived += 1
        world.condition.broadcast()
        try world.wait(operation: "\(operation) on rank \(rank)", ready: { round.arrived == size }, waitingFor: {
            let missing = round.contributions.indices.filter { round.contributions[$0] == nil }
            return "group ranks \(missing) (world ranks \(missing.map { group.worldRanks[$0] })) to join"
        })
        round.departed += 1
        if round.departed == size { group.rounds[key] = nil }
        return try finish(round, round.contributions.map { $0 as! Value })
    }

    // MARK: Checks

    private func checkSame(_ all: [HostBuffer], operation: String) throws {
        for (peer, buffer) in all.enumerated() where buffer.shape != all[rank].shape || buffer.dtype != all[rank].dtype {
            throw CommunicatorError(operation, "rank \(rank) passed \(all[rank].shape) \(all[rank].dtype) "
                + "but rank \(peer) passed \(buffer.shape) \(buffer.dtype)")
        }
    }

    /// `large` must have `factor` times the rows of `small` and otherwise the same shape and dtype.
    private func checkRows(_ large: Tensor, rowsOf small: Tensor, factor: Int, operation: String) throws {
        try HostBuffer.check(large, operation: operation)
        var expected = small.shape
        if !expected.isEmpty { expected[0] *= factor }
        guard !small.shape.isEmpty, large.shape == expected, large.dtype == small.dtype else {
            throw CommunicatorError(operation, "expected a \(expected) \(small.dtype) tensor (\(factor) times the "
                + "rows of \(small.shape)), got \(large.shape) \(large.dtype)")
        }
    }

    private func checkPeer(_ peer: Int, operation: String) throws {
        guard (0..<size).contains(peer) else {
            throw CommunicatorError(operation, "rank \(peer) is outside the group of \(size) ranks")
        }
    }
}

/// The work handle of an operation that finished before it returned.
final class CompletedWork: CollectiveWork {
    func wait() throws {}
}

/// One result slot per rank, filled by the ranks' threads.
private final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { slots[index] = value } }
    func values() -> [T] { lock.withLock { slots.map { $0! } } }
}

/// A posted receive: its message is taken and written when it is first waited for.
private final class ThreadReceive: CollectiveWork {
    private var complete: (() throws -> Void)?
    init(_ complete: @escaping () throws -> Void) { self.complete = complete }

    func wait() throws {
        guard let complete else { return }
        self.complete = nil
        try complete()
    }
}
