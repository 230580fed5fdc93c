import Foundation

/// The signals `--exit-signal` may name for `--exit-signal-handler`: Megatron takes a Python `signal.Signals`
/// name; these are the ones a process can catch and a scheduler or user sends to stop a job.
enum ExitSignal {
    static let numbers: [String: Int32] = [
        "SIGHUP": SIGHUP, "SIGINT": SIGINT, "SIGQUIT": SIGQUIT, "SIGUSR1": SIGUSR1, "SIGUSR2": SIGUSR2,
        "SIGALRM": SIGALRM, "SIGTERM": SIGTERM, "SIGXCPU": SIGXCPU,
    ]

    /// The names, in signal-number order.
    static var names: [String] { numbers.sorted { $0.value < $1.value }.map(\.key) }
}
