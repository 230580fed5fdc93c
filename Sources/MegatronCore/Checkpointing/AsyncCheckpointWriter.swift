import Foundation

/// Persists checkpoints on a background thread (`--async-save`): training goes on while one save is written and
/// finalized; the next save (or the end of training) waits for it first, and an error of the background write is
/// thrown there, naming the checkpoint. At most one write is in flight.
///
/// ```swift
/// let writer = AsyncCheckpointWriter()
/// try writer.wait()                                   // the previous save, if any, is complete (or throws)
/// writer.submit("iter_0000010") { try job.run() }     // state already copied: returns at once
/// ```
public final class AsyncCheckpointWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "megatron.async-checkpoint")
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var failure: CheckpointError?

    public init() {}

    /// Starts `write` (the checkpoint `name`) in the background.
    public func submit(_ name: String, _ write: @escaping @Sendable () throws -> Void) {
        queue.async(group: group) { [self] in
            do { try write() } catch {
                lock.lock()
                failure = CheckpointError("the asynchronous save of \(name) failed: \(error)")
                lock.unlock()
            }
        }
    }

    /// Waits for the write in flight; throws its error (once).
    public func wait() throws {
        group.wait()
        lock.lock()
        defer { failure = nil; lock.unlock() }
        if let failure { throw failure }
    }
}
