import Foundation

/// State shared by every rank of one `ThreadCommunicator.run`: one lock for all its groups (so an abort wakes
/// every waiter at once), the abort reason, and the timeout every wait honours.
final class ThreadWorld: @unchecked Sendable {
    let condition = NSCondition()
    let timeout: TimeInterval
    /// Set (under `condition`) by the first rank whose body throws; every wait then fails with it.
    private(set) var abortReason: String?
    /// The first rank failure, reported by `run`.
    private(set) var firstFailure: ThreadRankFailure?

    /// Ranks whose body has not returned yet.
    private var running: Int
    /// The world ranks whose body returned normally.
    private var returnedRanks: [Int] = []
    /// The readiness test of every rank blocked in `wait`, by a token per wait.
    private var blocked: [Int: () -> Bool] = [:]
    private var nextToken = 0

    init(size: Int, timeout: TimeInterval) {
        running = size
        self.timeout = timeout
    }

    /// Records that `rank`'s body returned normally; wakes the waiters so they can notice a deadlock.
    func returned(rank: Int) {
        condition.lock()
        defer { condition.unlock() }
        running -= 1
        returnedRanks.append(rank)
        condition.broadcast()
    }

    /// Every running rank is blocked and none of their waits can complete: only a rank that returned could
    /// have released them (a rank skipped a collective), so waiting out the timeout would only delay the error.
    /// Assumes ranks call collectives only from their own thread (a helper thread posting a `send` for a
    /// blocked rank would be invisible here).
    private var isDeadlocked: Bool {
        !returnedRanks.isEmpty && blocked.count == running && !blocked.values.contains { $0() }
    }

    /// Records `rank`'s failure (the first one wins) and wakes every rank blocked in a collective.
    func fail(rank: Int, error: Error) {
        condition.lock()
        defer { condition.unlock() }
        if firstFailure == nil {
            firstFailure = ThreadRankFailure(rank: rank, error: error)
            abortReason = "rank \(rank) failed: \(error)"
        }
        condition.broadcast()
    }

    /// Blocks (with `condition` held) until `ready()` holds; throws if the world aborts or the timeout passes.
    /// `waitingFor` describes what is missing, for the timeout message.
    func wait(operation: String, ready: () -> Bool, waitingFor: () -> String) throws {
        try withoutActuallyEscaping(ready) { ready in
            let token = nextToken
            nextToken += 1
            blocked[token] = ready
            defer { blocked[token] = nil }
            condition.broadcast()   // other waiters re-check for a deadlock now that this rank blocks too
            try waitBlocked(operation: operation, ready: ready, waitingFor: waitingFor)
        }
    }

    private func waitBlocked(operation: String, ready: () -> Bool, waitingFor: () -> String) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        while !ready() {
            if let reason = abortReason {
                throw CommunicatorError(operation, "aborted because \(reason)")
            }
            if isDeadlocked {
                throw CommunicatorError(operation, "waits for \(waitingFor()), but world rank(s) \(returnedRanks.sorted()) "
                    + "already returned and every other rank is waiting too "
                    + "(every rank of a group must call the same collectives in the same order)")
            }
            if !condition.wait(until: deadline) && !ready() {
                if let reason = abortReason { throw CommunicatorError(operation, "aborted because \(reason)") }
                throw CommunicatorError(operation, "timed out after \(timeout) s waiting for \(waitingFor()) "
                    + "(every rank of a group must call the same collectives in the same order)")
            }
        }
    }
}

/// One group's rendezvous state: the collectives in flight (keyed by sequence number, which each rank counts
/// on its own) and the point-to-point mailboxes. Guarded by the world's lock.
final class ThreadGroupState {
    /// World rank of each group rank, for messages and for `ThreadCommunicator.worldRanks`.
    let worldRanks: [Int]
    var rounds: [Int: ThreadRound] = [:]
    /// Sent messages per (source, destination) group rank pair, in send order.
    var mailboxes: [ThreadMailboxKey: ThreadMailbox] = [:]

    init(worldRanks: [Int]) { self.worldRanks = worldRanks }
    var size: Int { worldRanks.count }
}

struct ThreadMailboxKey: Hashable {
    var source: Int
    var destination: Int
}

/// The messages from one rank to another: the n-th receive posted takes the n-th message sent, whenever it
/// is waited for (as NCCL matches point-to-point operations in issue order).
struct ThreadMailbox {
    var messages: [Int: HostBuffer] = [:]
    var sent = 0
    var posted = 0
}

/// One collective call: what each rank contributed, and objects the ranks create together (split's groups).
final class ThreadRound {
    let operation: String
    var contributions: [Any?]
    var arrived = 0
    var departed = 0
    var shared: [Int: AnyObject] = [:]

    init(operation: String, size: Int) {
        self.operation = operation
        contributions = Array(repeating: nil, count: size)
    }
}

/// The failure of one rank's body in `ThreadCommunicator.run`.
public struct ThreadRankFailure: Error, CustomStringConvertible {
    public var rank: Int
    public var error: Error
    public var description: String { "rank \(rank) failed: \(error)" }
}
