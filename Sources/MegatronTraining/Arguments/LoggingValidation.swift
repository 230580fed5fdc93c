extension PretrainArguments {
    /// The logging flags' values, checked as Megatron checks them (Megatron's logging flags this build lacks,
    /// `--wandb-*` and the like, are refused by feature from `MegatronFlagCatalog`).
    func validateLogging() throws {
        func require(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ArgumentError(message()) }
        }
        try require((0...2).contains(timingLogLevel), "--timing-log-level must be 0, 1 or 2, got \(timingLogLevel)")
        try require(tensorboardLogInterval > 0, "--tensorboard-log-interval must be positive, got \(tensorboardLogInterval)")
        try require(tensorboardQueueSize > 0, "--tensorboard-queue-size must be positive, got \(tensorboardQueueSize)")
        if let every = logMemoryInterval {
            try require(every > 0 && every % logInterval == 0,
                        "--log-memory-interval (\(every)) must be a positive multiple of --log-interval (\(logInterval))")
        }
    }
}
