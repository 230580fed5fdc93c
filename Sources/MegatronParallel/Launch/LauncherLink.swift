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
    /// when the launcher exits; when it has exited already, ends this process with a message.
    public static func followLauncher(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let text = environment[variable], let launcher = pid_t(text), launcher == getppid() else { return }
        _ = cprocess_set_parent_death_signal(SIGKILL)
        // The launcher may have exited between the check and the request: the parent is then someone else.
        if getppid() != launcher {
            FileHandle.standardError.write(Data("the megatron launch that started this rank (pid \(launcher)) has exited\n".utf8))
            exit(1)
        }
    }
}
