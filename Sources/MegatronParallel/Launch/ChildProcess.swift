import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn as the leader of a new process group, reaped with waitpid.
/// (Foundation's `Process` cannot make a process group, and signalling only the direct child would leave
/// its own children running.)
final class ChildProcess {
    enum Status: Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    let pid: pid_t
    private(set) var status: Status?

    init(command: [String], environment: [String: String]) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for number in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaultSignals, number) }
        // A new process group (led by the child), no signals blocked, and default actions for the signals the
        // launcher catches or ignores (ignored dispositions would otherwise survive exec).
        posix_spawnattr_setflags(&attributes,
                                 Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        let arguments = command.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (arguments + variables).forEach { free($0) } }
        var pid: pid_t = 0
        // posix_spawnp: a program named without a slash is looked up on PATH, as torchrun's --no-python does.
        let result = posix_spawnp(&pid, command[0], nil, &attributes, arguments, variables)
        guard result == 0 else {
            throw RendezvousError("cannot run \(command[0]): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    /// Records the exit status if the child has ended (no wait).
    func poll() {
        guard status == nil else { return }
        reap(options: WNOHANG)
    }

    func waitForExit() {
        while status == nil { reap(options: 0) }
    }

    /// Sends `signal` to the child's process group.
    func signal(_ signal: Int32) { kill(-pid, signal) }

    private func reap(options: Int32) {
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, options)
        if result == pid {
            // The <sys/wait.h> macros are not imported into Swift: exit status in bits 8-15, signal in 0-6.
            let signal = raw & 0x7f
            status = signal == 0 ? .exited((raw >> 8) & 0xff) : .signaled(signal)
        } else if result < 0 && errno != EINTR {
            status = .exited(-1)
        }
    }
}
