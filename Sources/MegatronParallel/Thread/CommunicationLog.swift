import Foundation
import MegatronTensor

/// What the ranks of a thread-rank run asked their communicators to do, each rank's events in its own order:
/// the operations it issued (on which group, which collective or which point-to-point transfers) and the ones
/// it waited for. `NCCLOrderCheck` replays it under NCCL's rules, so that a CPU run shows whether the same
/// program would mismatch or hang on GPUs, where sends do not sit in mailboxes as they do on thread ranks.
///
/// ```swift
/// let log = CommunicationLog(worldSize: 4)
/// _ = try ThreadCommunicator.run(worldSize: 4) { world in try train(RecordingCommunicator(world: world, log: log)) }
/// let summary = try NCCLOrderCheck.check(log)   // throws naming the ranks and operations at fault
/// ```
public final class CommunicationLog: @unchecked Sendable {
    /// One point-to-point transfer, as the issuing rank sees it.
    public struct Transfer: Equatable, CustomStringConvertible {
        public var isSend: Bool
        /// The other rank, as a rank of the group.
        public var peer: Int
        public var count: Int
        public var dtype: DType

        public var description: String { "\(isSend ? "send" : "recv") \(count) \(dtype) \(isSend ? "to" : "from") \(peer)" }
    }

    public enum Kind {
        /// A collective every rank of the group calls alike, named with what must agree (element count, dtype).
        case collective(String)
        /// Point-to-point transfers issued together (one NCCL group; a lone `send` or `recv` is a group of one).
        case transfers([Transfer])
        /// `split`: a collective of the group that the host waits in until every rank has called it.
        case split
    }

    /// One issued operation.
    public struct Operation: CustomStringConvertible {
        public let id: Int
        /// The issuing rank, as a rank of the world.
        public let rank: Int
        /// Names the group the same way on every member (and differently from every other group).
        public let group: String
        /// The group's ranks as world ranks, in group order.
        public let groupRanks: [Int]
        public let groupRank: Int
        public let kind: Kind

        public var description: String {
            switch kind {
            case .collective(let label): "\(label) on group \(group) \(groupRanks)"
            case .split: "split on group \(group) \(groupRanks)"
            case .transfers(let transfers): "[\(transfers.map(worldView).joined(separator: ", "))] on group \(group) \(groupRanks)"
            }
        }

        /// A transfer with its peer as a world rank.
        private func worldView(_ t: Transfer) -> String {
            "\(t.isSend ? "send" : "recv") \(t.count) \(t.dtype) \(t.isSend ? "to" : "from") world rank \(groupRanks[t.peer])"
        }
    }

    /// What a rank did, in its order.
    enum Event {
        case issue(Int)
        case wait(Int)
        /// The host waited for everything the rank's compute stream was ordered after (a barrier).
        case hostSync
    }

    public let worldSize: Int
    private let lock = NSLock()
    private var recorded: [Operation] = []
    private var perRank: [[Event]]

    public init(worldSize: Int) {
        self.worldSize = worldSize
        perRank = Array(repeating: [], count: worldSize)
    }

    /// Every operation issued, in the order the ranks issued them.
    public var operations: [Operation] { lock.withLock { recorded } }
    var events: [[Event]] { lock.withLock { perRank } }

    func issue(rank: Int, group: String, groupRanks: [Int], groupRank: Int, kind: Kind) -> Int {
        lock.withLock {
            let id = recorded.count
            recorded.append(Operation(id: id, rank: rank, group: group, groupRanks: groupRanks, groupRank: groupRank, kind: kind))
            perRank[rank].append(.issue(id))
            return id
        }
    }

    func waited(rank: Int, operation: Int) { lock.withLock { perRank[rank].append(.wait(operation)) } }
    func hostSynced(rank: Int) { lock.withLock { perRank[rank].append(.hostSync) } }
}
