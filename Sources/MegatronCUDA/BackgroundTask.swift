import Foundation

/// Work started on a background thread whose result callers wait for. It runs exactly once, and
/// every caller of `value()` gets the same value or error. A caller that finds the work not yet
/// started (every worker thread busy with other work) runs it on its own thread instead of queueing
/// behind work it does not need.
///
///     let task = BackgroundTask { try compiler.compile(source: text, name: "norm.cu") }
///     task.start()
///     // ... other start-up work ...
///     let image = try task.value()   // waits for the worker, or compiles here if none has begun
final class BackgroundTask<Value>: @unchecked Sendable {
    private enum State {
        case notStarted(() throws -> Value)
        case running
        case finished(Result<Value, Error>)
    }

    private let condition = NSCondition()
    private var state: State

    init(_ work: @escaping () throws -> Value) { state = .notStarted(work) }

    /// Queues the work on a global concurrent queue (libdispatch runs about one thread per core).
    func start() {
        DispatchQueue.global(qos: .userInitiated).async { self.runIfNotStarted() }
    }

    /// The work's value or error: waits while another thread runs it, runs it here if nobody has.
    func value() throws -> Value {
        runIfNotStarted()
        condition.lock()
        defer { condition.unlock() }
        while true {
            if case .finished(let result) = state { return try result.get() }
            condition.wait()
        }
    }

    /// The result once the work has finished, nil before; never waits.
    var finishedResult: Result<Value, Error>? {
        condition.lock()
        defer { condition.unlock() }
        if case .finished(let result) = state { return result }
        return nil
    }

    private func runIfNotStarted() {
        condition.lock()
        guard case .notStarted(let work) = state else {
            condition.unlock()
            return
        }
        state = .running
        condition.unlock()
        let result = Result { try work() }
        condition.lock()
        state = .finished(result)
        condition.broadcast()
        condition.unlock()
    }
}
