/// Megatron's logging flags this build refuses, each with the reason, and the checks on the logging flags
/// it accepts (the accepted ones are in `PretrainFlags.all`).
enum LoggingFlags {
    /// `--no-one-logger`: OneLogger telemetry is never used here, so the flag asks for what this build does.
    static let noOneLogger = Flag(name: "--no-one-logger", takesValue: false) { _, _ in }

    /// Flag name to why it is refused and what to use instead.
    static let refused: [String: String] = {
        let wandb = "Weights & Biases logging is not available in this build; use --tensorboard-dir"
        let oneLogger = "OneLogger telemetry is not available in this build; drop the flag (--tensorboard-dir logs the run)"
        return [
            "--wandb-project": wandb, "--wandb-exp-name": wandb, "--wandb-save-dir": wandb, "--wandb-entity": wandb,
            "--one-logger-project": oneLogger, "--one-logger-run-name": oneLogger, "--one-logger-async": oneLogger,
            "--app-tag-run-name": oneLogger, "--app-tag-run-version": oneLogger,
            "--log-energy": "energy logging needs NVML's energy counters, which this build does not read",
            "--log-max-attention-logit": "the attention kernels here do not compute the maximum attention logit",
            "--log-straggler": "straggler detection (nvidia-resiliency-ext) is not available in this build",
        ]
    }()

    /// The error for a refused logging flag, nil for any other flag.
    static func refusal(_ name: String) -> ArgumentError? {
        refused[name].map { ArgumentError("\(name): \($0)") }
    }
}

extension PretrainArguments {
    /// The logging flags' values, checked as Megatron checks them.
    func validateLogging() throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require(logInterval > 0, "--log-interval must be positive, got \(logInterval)")
        try require((0...2).contains(timingLogLevel), "--timing-log-level must be 0, 1 or 2, got \(timingLogLevel)")
        try require(tensorboardLogInterval > 0, "--tensorboard-log-interval must be positive, got \(tensorboardLogInterval)")
        try require(tensorboardQueueSize > 0, "--tensorboard-queue-size must be positive, got \(tensorboardQueueSize)")
        if let every = logMemoryInterval {
            try require(every > 0 && every % logInterval == 0,
                        "--log-memory-interval (\(every)) must be a positive multiple of --log-interval (\(logInterval))")
        }
    }
}
