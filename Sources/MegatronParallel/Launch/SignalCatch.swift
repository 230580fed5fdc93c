import Dispatch

/// Catches signal `number` instead of its default action, calling `handler` on `queue` each time it arrives;
/// cancel the returned source to stop. Returns once the source is registered: from then on the signal is caught.
///
/// On Linux, libdispatch routes a signal to its sources through a handler of its own, which it installs once per
/// process, when the first source for that signal registers. Setting the signal's disposition around a source
/// (`SIG_IGN` before, `SIG_DFL` after, the usual pattern on Darwin) replaces that handler for good, and an ignored
/// signal is discarded before any source sees it: every later source for the signal, in this process, would
/// never fire (the launcher's watch of `megatron launch --threads`, then a rank's `--exit-signal-handler`). So the
/// disposition is left to libdispatch; after the last source is cancelled the signal stays caught, and unread.
///
/// ```swift
/// let source = catchSignal(SIGTERM) { print("asked to stop") }
/// defer { source.cancel() }
/// ```
public func catchSignal(_ number: Int32, queue: DispatchQueue = .global(), handler: @escaping @Sendable () -> Void) -> DispatchSourceSignal {
    let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
    let registered = DispatchSemaphore(value: 0)
    source.setRegistrationHandler { registered.signal() }
    source.setEventHandler(handler: handler)
    source.resume()
    registered.wait()
    return source
}
