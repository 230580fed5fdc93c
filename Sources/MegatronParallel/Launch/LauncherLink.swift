import CProcess
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The tie between a rank and the `megatron launch` that started it: a launcher killed with SIGKILL (which it
/// cannot catch, so it forwards nothing) still takes its ranks with it, so no rank is left running, holding its
/// GPU, in a job whose launcher is gone.
///
/// ```swift
/// LauncherLink.followLauncher()   // first thing in main: a no-op unless `megatron launch` started this process
/// ```
public enum LauncherLink {
    /// The variable the launcher sets, in each rank's environment, to its own process id.
    public static let variable = "MEGATRON_LAUNCHER_PID"

    /// When the launcher named by `variable` is this process's parent, asks the kernel to SIGKILL this process
    /// when the launcher exits. When the launcher has exited already (it is no longer among this process's
    /// ancestors: the rank was re-parented before it got here), ends this process with a message. A rank
    /// started through a wrapper (a shell script the launch runs) has the launcher further up and is left alone.
    public static func followLauncher(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let text = environment[variable], let launcher = pid_t(text) else { return }
        if launcher == getppid() {
            _ = cprocess_set_parent_death_signal(SIGKILL)
            // The launcher may have exited between the check and the request: the parent is then someone else.
            if getppid() == launcher { return }
        } else if ancestors().map({ $0.contains(launcher) }) ?? true {
            return
        }
        FileHandle.standardError.write(Data("the megatron launch that started this rank (pid \(launcher)) has exited\n".utf8))
        exit(1)
    }

    /// This process's ancestors, from its parent up, read from /proc; nil where /proc cannot tell.
    static func ancestors() -> [pid_t]? {
        var chain: [pid_t] = []
        var pid = getppid()
        while pid > 1, chain.count < 64 {
            chain.append(pid)
            guard let parent = parentOf(pid) else { return nil }
            pid = parent
        }
        return chain
    }

    /// The parent of `pid`: the fourth field of /proc/<pid>/stat, after the parenthesised command name.
    static func parentOf(_ pid: pid_t) -> pid_t? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }
}
