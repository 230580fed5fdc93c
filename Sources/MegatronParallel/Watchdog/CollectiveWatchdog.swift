import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A communicator the watchdog can question and stop: NCCL's asynchronous error and `ncclCommAbort`.
public protocol AbortableCommunicator: AnyObject {
    /// Why the communicator failed in the background (a peer that died, a network error), or nil.
    func asyncFailure() -> String?
    /// Stops every operation in flight; the communicator is unusable afterwards.
    func abort()
}

/// Ends a process whose collectives stopped making progress, as PyTorch's NCCL watchdog does: a rank whose
/// peer died would otherwise wait in a collective (or in a stream synchronize behind it) forever.
///
/// A thread checks, every `pollInterval`, each operation in flight and each watched communicator. When an
/// operation has not completed within the timeout (`--distributed-timeout-minutes`), or a communicator reports
/// an asynchronous failure, it aborts every watched communicator (`ncclCommAbort`, so no peer is left waiting
/// on this rank either) and calls `onFailure` with a message naming the rank, the operation and the time
/// waited; by default that prints the message and exits with status 1, which `megatron launch` reports and
/// answers by stopping the job.
///
/// ```swift
/// let watchdog = CollectiveWatchdog(rank: env.rank, timeout: 600)
/// watchdog.watch(communicator)
/// watchdog.track("allReduce(sum) on rank 0 of 8") { try done.isComplete() }
/// try watchdog.withDeadline("ncclCommInitRank") { try join() }   // a blocking call, held to the same timeout
/// ```
public final class CollectiveWatchdog: @unchecked Sendable {
    private struct Pending {
        var operation: String
        var started: Date
        var isComplete: () throws -> Bool
    }

    private final class Weak {
        weak var communicator: AbortableCommunicator?
        init(_ communicator: AbortableCommunicator) { self.communicator = communicator }
    }

    /// World rank of this process, for messages.
    public let rank: Int
    public let pollInterval: TimeInterval
    private let lock = NSLock()
    private var timeoutSeconds: TimeInterval
    private var pending: [Int: Pending] = [:]
    private var nextID = 0
    private var watched: [Weak] = []
    private var threadStarted = false
    private let onThreadStart: () -> Void
    private let onFailure: (String) -> Void

    /// `onThreadStart` runs first on the watchdog's thread (making a CUDA context current there, so that
    /// completion checks can query events).
    public init(rank: Int, timeout: TimeInterval, pollInterval: TimeInterval = 1,
                onThreadStart: @escaping () -> Void = {}, onFailure: @escaping (String) -> Void = CollectiveWatchdog.terminate) {
        self.rank = rank
        timeoutSeconds = timeout
        self.pollInterval = pollInterval
        self.onThreadStart = onThreadStart
        self.onFailure = onFailure
    }

    /// Seconds an operation may take (`--distributed-timeout-seconds-after-init` changes it once the job runs).
    public var timeout: TimeInterval {
        get { lock.withLock { timeoutSeconds } }
        set { lock.withLock { timeoutSeconds = newValue } }
    }

    /// Checks `communicator` for asynchronous failures and aborts it when the job fails (held weakly).
    public func watch(_ communicator: AbortableCommunicator) {
        lock.withLock { watched.append(Weak(communicator)) }
        startThreadOnce()
    }

    /// Watches one operation in flight until `isComplete` says it has finished.
    public func track(_ operation: String, isComplete: @escaping () throws -> Bool) {
        lock.withLock {
            pending[nextID] = Pending(operation: operation, started: Date(), isComplete: isComplete)
            nextID += 1
        }
        startThreadOnce()
    }

    /// Runs a blocking call (joining a communicator, a host wait) under the same timeout.
    public func withDeadline<T>(_ operation: String, _ body: () throws -> T) rethrows -> T {
        let finished = Flag()
        track(operation) { finished.value }
        defer { finished.value = true }
        return try body()
    }

    /// Operations being watched (completed ones leave at the next check).
    var pendingCount: Int { lock.withLock { pending.count } }

    /// One round of checks at `now`: drops completed operations and returns why the job must end, if it must.
    func check(now: Date = Date()) -> String? {
        let (operations, communicators, limit) = lock.withLock { (pending, watched.compactMap(\.communicator), timeoutSeconds) }
        for communicator in communicators {
            if let failure = communicator.asyncFailure() { return "rank \(rank): \(failure)" }
        }
        var completed: [Int] = []
        defer { lock.withLock { for id in completed { pending[id] = nil } } }
        for (id, operation) in operations.sorted(by: { $0.key < $1.key }) {
            do {
                if try operation.isComplete() {
                    completed.append(id)
                    continue
                }
            } catch {
                return "rank \(rank): \(operation.operation) failed: \(error)"
            }
            let waited = now.timeIntervalSince(operation.started)
            if waited > limit {
                return "rank \(rank): \(operation.operation) has not completed after \(Int(waited.rounded())) s "
                    + "(the timeout is \(Int(limit)) s, --distributed-timeout-minutes): a peer rank is stuck or gone"
            }
        }
        return nil
    }

    /// Aborts every watched communicator, then reports `reason`.
    func fail(_ reason: String) {
        let communicators = lock.withLock { watched.compactMap(\.communicator) }
        for communicator in communicators { communicator.abort() }
        onFailure(reason + "; the communicators were aborted")
    }

    private func startThreadOnce() {
        let start = lock.withLock {
            defer { threadStarted = true }
            return !threadStarted
        }
        guard start else { return }
        let thread = Thread { [weak self, onThreadStart, pollInterval] in
            onThreadStart()
            while true {
                Thread.sleep(forTimeInterval: pollInterval)
                guard let watchdog = self else { return }
                if let reason = watchdog.check() {
                    watchdog.fail(reason)
                    return
                }
            }
        }
        thread.name = "collective watchdog"
        thread.start()
    }

    /// Prints `message` and ends the process at once with status 1. `exit` is not used: its handlers would
    /// tear down CUDA and NCCL while other threads are blocked inside them.
    public static func terminate(_ message: String) {
        fflush(nil)
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        _exit(1)
    }

    private final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var set = false
        var value: Bool {
            get { lock.withLock { set } }
            set { lock.withLock { set = newValue } }
        }
    }
}
