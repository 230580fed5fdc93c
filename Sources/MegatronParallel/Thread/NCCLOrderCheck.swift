/// Replays a `CommunicationLog` as NCCL would run it, to find on CPU thread ranks what would mismatch or hang
/// on GPUs. Thread ranks forgive what NCCL does not: their sends are buffered (an NCCL send waits for its
/// receiver), and every group has its own mailboxes whatever the order of calls.
///
/// The rules, as NCCL's documentation and `NCCLCommunicator` give them:
/// - **Matching.** The k-th collective of a group is the same call (name, element count, dtype) on every
///   member. The k-th send from rank a to rank b on a group pairs with b's k-th receive from a there, with the
///   same element count and dtype; every send has its receive.
/// - **Streams.** Each communicator runs its operations in issue order on its own stream, after whatever the
///   rank's compute stream was ordered after when the operation was issued (the operations it had waited for).
/// - **Groups complete together.** A collective, or a batch of transfers issued as one NCCL group, finishes
///   only once every operation it is matched with has started; NCCL promises no progress to part of a group,
///   so operations linked through matched transfers are taken as one meeting that starts when all of its
///   members can start.
/// - **The host waits** where NCCL makes it wait: `split`; the first transfer between two ranks in one direction
///   on a communicator (NCCL connects point-to-point links on first use, and both hosts must reach the call);
///   every collective, whose connections NCCL may also set up on first use (taken as a host rendezvous, which
///   is stricter than NCCL needs); and `barrier`, which waits for the compute stream.
///
/// Not modelled: host waits on tensor values (`item()`), which thread ranks do not log, and two NCCL kernels
/// failing to fit on the GPU at once.
public enum NCCLOrderCheck {
    /// What a passing check saw.
    public struct Summary: CustomStringConvertible {
        public var operations: Int
        public var groups: Int
        public var transfers: Int
        public var collectives: Int

        public var description: String {
            "\(operations) operations on \(groups) groups (\(collectives) collective calls, \(transfers) point-to-point "
                + "transfers): matched and free of deadlock under NCCL's ordering rules"
        }
    }

    /// Throws a `CommunicationOrderError` naming the first mismatch, or the ranks stuck and what each waits for.
    @discardableResult
    public static func check(_ log: CommunicationLog) throws -> Summary {
        let operations = log.operations
        var matching = Matching(count: operations.count)
        let transfers = try matching.pairTransfers(operations)
        let collectives = try matching.alignCollectives(operations)
        var replay = Replay(operations: operations, events: log.events, meetings: matching.meetings())
        try replay.run()
        return Summary(operations: operations.count, groups: Set(operations.map(\.group)).count, transfers: transfers,
                       collectives: collectives)
    }
}

/// What a log breaks of NCCL's rules.
public struct CommunicationOrderError: Error, CustomStringConvertible {
    public var description: String
}

/// Which operations meet: union-find over operations, joined by matched transfers and by collective calls.
struct Matching {
    private var parent: [Int]
    /// For each operation's new point-to-point links, the peer operation whose host must reach its call too.
    var connectionPartners: [[Int]]

    init(count: Int) {
        parent = Array(0..<count)
        connectionPartners = Array(repeating: [], count: count)
    }

    mutating func root(_ x: Int) -> Int {
        var x = x
        while parent[x] != x {
            parent[x] = parent[parent[x]]
            x = parent[x]
        }
        return x
    }

    mutating func join(_ a: Int, _ b: Int) { parent[root(a)] = root(b) }

    /// Pairs the k-th send from a to b on a group with b's k-th receive from a; returns the transfers paired.
    mutating func pairTransfers(_ operations: [CommunicationLog.Operation]) throws -> Int {
        struct Link: Hashable { var group: String, source: Int, destination: Int }
        var sends: [Link: [(operation: Int, transfer: CommunicationLog.Transfer)]] = [:]
        var receives: [Link: [(operation: Int, transfer: CommunicationLog.Transfer)]] = [:]
        for op in operations {
            guard case .transfers(let transfers) = op.kind else { continue }
            for t in transfers {
                if t.isSend {
                    sends[Link(group: op.group, source: op.groupRanks[op.groupRank], destination: op.groupRanks[t.peer]), default: []]
                        .append((op.id, t))
                } else {
                    receives[Link(group: op.group, source: op.groupRanks[t.peer], destination: op.groupRanks[op.groupRank]), default: []]
                        .append((op.id, t))
                }
            }
        }
        var paired = 0
        for link in Set(sends.keys).union(receives.keys) {
            let out = sends[link] ?? [], into = receives[link] ?? []
            for (k, (send, receive)) in zip(out, into).enumerated() {
                guard send.transfer.count == receive.transfer.count, send.transfer.dtype == receive.transfer.dtype else {
                    throw CommunicationOrderError(description: "transfer #\(k) from world rank \(link.source) to \(link.destination) "
                        + "on group \(link.group) sends \(send.transfer.count) \(send.transfer.dtype) but is received into "
                        + "\(receive.transfer.count) \(receive.transfer.dtype) (NCCL pairs them in issue order)")
                }
                join(send.operation, receive.operation)
                if k == 0 {
                    connectionPartners[send.operation].append(receive.operation)
                    connectionPartners[receive.operation].append(send.operation)
                }
                paired += 1
            }
            guard out.count == into.count else {
                throw CommunicationOrderError(description: "world rank \(link.source) sends \(out.count) tensors to world rank "
                    + "\(link.destination) on group \(link.group), which receives \(into.count)")
            }
        }
        return paired
    }

    /// Joins the k-th collective call of every member of a group; returns the calls joined.
    mutating func alignCollectives(_ operations: [CommunicationLog.Operation]) throws -> Int {
        struct Member: Hashable { var group: String, rank: Int }
        var calls: [Member: [CommunicationLog.Operation]] = [:]
        var members: [String: [Int]] = [:]
        for op in operations {
            if case .transfers = op.kind { members[op.group] = op.groupRanks; continue }
            calls[Member(group: op.group, rank: op.rank), default: []].append(op)
            members[op.group] = op.groupRanks
        }
        var joined = 0
        for (group, ranks) in members.sorted(by: { $0.key < $1.key }) {
            let sequences = ranks.map { calls[Member(group: group, rank: $0)] ?? [] }
            let longest = sequences.map(\.count).max() ?? 0
            for k in 0..<longest {
                let first = sequences[0].count > k ? sequences[0][k] : nil
                for (i, sequence) in sequences.enumerated() {
                    guard k < sequence.count, let first else {
                        let present = sequences.indices.filter { sequences[$0].count > k }.map { ranks[$0] }
                        throw CommunicationOrderError(description: "collective #\(k) of group \(group) \(ranks) is called by "
                            + "world ranks \(present) only: \(sequences.first { $0.count > k }![k])")
                    }
                    guard Self.label(sequence[k]) == Self.label(first) else {
                        throw CommunicationOrderError(description: "collective #\(k) of group \(group) \(ranks) differs: world "
                            + "rank \(ranks[0]) calls \(Self.label(first)), world rank \(ranks[i]) calls \(Self.label(sequence[k]))")
                    }
                    join(sequence[k].id, first.id)
                }
                joined += 1
            }
        }
        return joined
    }

    private static func label(_ op: CommunicationLog.Operation) -> String {
        switch op.kind {
        case .collective(let label): label
        case .split: "split"
        case .transfers: "transfers"
        }
    }

    /// The meeting of every operation (a representative operation id), and the connection partners.
    mutating func meetings() -> (of: [Int], partners: [[Int]]) {
        ((0..<parent.count).map { root($0) }, connectionPartners)
    }
}

/// Runs the ranks' logs forward under NCCL's rules until every operation has finished, or until nothing can
/// move (a hang on GPUs).
struct Replay {
    let operations: [CommunicationLog.Operation]
    let events: [[CommunicationLog.Event]]
    let meetingOf: [Int]
    let partners: [[Int]]
    private var members: [Int: [Int]] = [:]
    /// Each rank's position in its events, and the operations it has waited for so far, in order.
    private var position: [Int]
    private var waited: [[Int]]
    /// How many of `waited[rank]` (from the start) have finished.
    private var finishedWaits: [Int]
    private var issued: [Bool], finished: [Bool]
    /// Per operation: the previous operation of its rank on its group, and how many waits preceded its issue.
    private var streamPrevious: [Int?], waitsBefore: [Int]
    private var lastOnStream: [String: Int] = [:]

    init(operations: [CommunicationLog.Operation], events: [[CommunicationLog.Event]], meetings: (of: [Int], partners: [[Int]])) {
        self.operations = operations
        self.events = events
        meetingOf = meetings.of
        partners = meetings.partners
        for op in operations { members[meetings.of[op.id], default: []].append(op.id) }
        position = Array(repeating: 0, count: events.count)
        waited = Array(repeating: [], count: events.count)
        finishedWaits = Array(repeating: 0, count: events.count)
        issued = Array(repeating: false, count: operations.count)
        finished = issued
        streamPrevious = Array(repeating: nil, count: operations.count)
        waitsBefore = Array(repeating: 0, count: operations.count)
    }

    mutating func run() throws {
        var moved = true
        while moved {
            moved = false
            for rank in events.indices { moved = advanceHost(rank) || moved }
            for (meeting, ops) in members where !finished[meeting] && ops.allSatisfy({ canStart($0) }) {
                for op in ops { finished[op] = true }
                moved = true
            }
            for rank in events.indices {
                while finishedWaits[rank] < waited[rank].count && finished[waited[rank][finishedWaits[rank]]] { finishedWaits[rank] += 1 }
            }
        }
        let stuck = events.indices.filter { position[$0] < events[$0].count }
        let unfinished = operations.indices.filter { !finished[$0] }
        guard stuck.isEmpty && unfinished.isEmpty else { throw CommunicationOrderError(description: report(stuck: stuck)) }
    }

    /// Moves a rank's host through its events as far as NCCL would let it; returns whether it moved.
    private mutating func advanceHost(_ rank: Int) -> Bool {
        var moved = false
        while position[rank] < events[rank].count {
            switch events[rank][position[rank]] {
            case .wait(let op):
                waited[rank].append(op)
            case .hostSync:
                guard finishedWaits[rank] == waited[rank].count else { return moved }
            case .issue(let op):
                if !issued[op] {
                    issued[op] = true
                    let stream = "\(rank) \(operations[op].group)"
                    streamPrevious[op] = lastOnStream[stream]
                    lastOnStream[stream] = op
                    waitsBefore[op] = waited[rank].count
                    moved = true
                }
                guard hostMayPass(op) else { return moved }
            }
            position[rank] += 1
            moved = true
        }
        return moved
    }

    /// Whether the host returns from issuing `op`: at once, except where NCCL waits for other hosts.
    private func hostMayPass(_ op: Int) -> Bool {
        switch operations[op].kind {
        case .collective, .split: members[meetingOf[op]]!.allSatisfy { issued[$0] }
        case .transfers: partners[op].allSatisfy { issued[$0] }
        }
    }

    /// Whether `op` could start on its stream: issued, its stream's previous operation finished, and every
    /// operation its rank had waited for when issuing it finished.
    private func canStart(_ op: Int) -> Bool {
        guard issued[op] else { return false }
        if let previous = streamPrevious[op], !finished[previous] { return false }
        return finishedWaits[operations[op].rank] >= waitsBefore[op]
    }

    private func report(stuck: [Int]) -> String {
        var lines = ["under NCCL's ordering rules these operations never finish (a hang on GPUs):"]
        for rank in events.indices {
            let mine = operations.filter { $0.rank == rank && !finished[$0.id] }
            guard let first = mine.first(where: { issued[$0.id] }) ?? mine.first else {
                if stuck.contains(rank) { lines.append("  world rank \(rank): host waits for its stream at a barrier") }
                continue
            }
            let host = stuck.contains(rank) ? "host stuck in its call" : "host went on"
            var cause = ""
            if let previous = streamPrevious[first.id], !finished[previous] {
                cause = ", behind \(operations[previous]) on its stream"
            } else if issued[first.id] {
                let blockers = members[meetingOf[first.id]]!.filter { !canStart($0) && $0 != first.id }
                if let blocker = blockers.first {
                    cause = ", meeting world rank \(operations[blocker].rank)'s \(operations[blocker]), which "
                        + (issued[blocker] ? "cannot start" : "is not issued yet")
                }
            }
            lines.append("  world rank \(rank) (\(mine.count) unfinished, \(host)): \(first)\(cause)")
        }
        return lines.joined(separator: "\n")
    }
}
