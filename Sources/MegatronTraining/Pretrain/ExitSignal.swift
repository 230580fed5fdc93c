import Foundation

/// The signals `--exit-signal` may name for `--exit-signal-handler`: Megatron takes a Python `signal.Signals`
/// name; these are the ones a process can catch and a scheduler or user sends to stop a job (in signal-number order).
public enum ExitSignal: String, FlagChoice, CaseIterable {
    case sighup = "SIGHUP", sigint = "SIGINT", sigquit = "SIGQUIT", sigusr1 = "SIGUSR1", sigusr2 = "SIGUSR2"
    case sigalrm = "SIGALRM", sigterm = "SIGTERM", sigxcpu = "SIGXCPU"

    var number: Int32 {
        switch self {
        case .sighup: SIGHUP
        case .sigint: SIGINT
        case .sigquit: SIGQUIT
        case .sigusr1: SIGUSR1
        case .sigusr2: SIGUSR2
        case .sigalrm: SIGALRM
        case .sigterm: SIGTERM
        case .sigxcpu: SIGXCPU
        }
    }
}
