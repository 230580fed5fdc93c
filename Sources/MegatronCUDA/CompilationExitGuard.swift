import Foundation

/// Makes process exit wait for NVRTC compilations in flight.
///
/// Why: when a process exits while another thread is inside nvrtcCompileProgram, exit runs NVRTC's
/// static destructors under that thread and the process aborts ("LLVM ERROR: out of memory",
/// SIGSEGV). Background compilation makes this ordinary: a short run
/// that never launches flash attention ends while that module is still compiling.
///
/// How: exit handlers run in reverse order of registration, and NVRTC registers some of its
/// destructors during its first compilation (a handler registered before that did not help; one
/// registered after a trivial compilation did). So the first compilation of the process first runs
/// a trivial one (`prepare`, tens of milliseconds), then registers `drain` with atexit: it runs
/// before NVRTC's destructors, refuses new compilations, and waits for the running ones (their
/// images still reach the disk cache). Only uncached compilations pay any of this; a warm start
/// never arms it.
///
///     let image = try CompilationExitGuard.process.run(prepare: warmUp) { try compileForReal() }
final class CompilationExitGuard: @unchecked Sendable {
    /// The guard of this process. Process-wide because exit is: every compiler in the process
    /// must be drained by the one exit handler.
    static let process: CompilationExitGuard = CompilationExitGuard(onArm: {
        _ = atexit { CompilationExitGuard.process.drain() }
    })

    private let condition = NSCondition()
    private let onArm: () -> Void
    private var armed = false
    private var closing = false
    private var active = 0

    /// `onArm` runs once, after the first `prepare`: the process guard registers its exit handler there.
    init(onArm: @escaping () -> Void) { self.onArm = onArm }

    /// Runs `body` (one compilation) counted as in flight. The first call runs `prepare` and arms
    /// the guard first, while other callers wait. Throws without running `body` once `drain` began.
    func run<T>(prepare: () -> Void, _ body: () throws -> T) throws -> T {
        condition.lock()
        if !armed {
            prepare()
            onArm()
            armed = true
        }
        guard !closing else {
            condition.unlock()
            throw CUDAError.nvrtc(call: "nvrtcCompileProgram", message: "not started: the process is exiting")
        }
        active += 1
        condition.unlock()
        defer {
            condition.lock()
            active -= 1
            condition.broadcast()
            condition.unlock()
        }
        return try body()
    }

    /// Refuses compilations from now on and waits until none is running.
    func drain() {
        condition.lock()
        closing = true
        while active > 0 { condition.wait() }
        condition.unlock()
    }

    /// Compilations running now.
    var activeCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return active
    }
}
