extension OptimizerParamScheduler {
    /// Megatron's scheduler `state_dict()`, under its key names; decoding also accepts the older names
    /// (`start_lr`, `warmup_iter`, `warmup_steps`, `end_iter`, `decay_steps`, `decay_style`, `num_iters`).
    public struct State: Codable, Equatable {
        public var maxLR: Double
        public var lrWarmupSteps: Double
        public var numSteps: Int
        public var lrDecayStyle: LRDecayStyle
        public var lrDecaySteps: Int
        public var minLR: Double
        /// The weight-decay fields are absent from checkpoints older than weight-decay scheduling.
        public var weightDecay: WeightDecayState?

        public struct WeightDecayState: Equatable {
            public var startWD: Double
            public var endWD: Double
            public var wdIncrStyle: WeightDecayIncrementStyle
            public var wdIncrSteps: Int

            public init(startWD: Double, endWD: Double, wdIncrStyle: WeightDecayIncrementStyle, wdIncrSteps: Int) {
                self.startWD = startWD
                self.endWD = endWD
                self.wdIncrStyle = wdIncrStyle
                self.wdIncrSteps = wdIncrSteps
            }
        }

        enum Key: String, CodingKey {
            case maxLR = "max_lr", lrWarmupSteps = "lr_warmup_steps", numSteps = "num_steps"
            case lrDecayStyle = "lr_decay_style", lrDecaySteps = "lr_decay_steps", minLR = "min_lr"
            case startWD = "start_wd", endWD = "end_wd", wdIncrStyle = "wd_incr_style", wdIncrSteps = "wd_incr_steps"
            case startLR = "start_lr", warmupIter = "warmup_iter", warmupSteps = "warmup_steps", endIter = "end_iter"
            case decaySteps = "decay_steps", decayStyle = "decay_style", numIters = "num_iters"
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            func first<T: Decodable>(_ type: T.Type, _ keys: Key...) throws -> T {
                for key in keys where c.contains(key) { return try c.decode(T.self, forKey: key) }
                throw OptimizerSetupError("scheduler state has none of the keys \(keys.map(\.rawValue).joined(separator: ", "))")
            }
            maxLR = try first(Double.self, .startLR, .maxLR)
            minLR = try first(Double.self, .minLR)
            lrWarmupSteps = try first(Double.self, .warmupIter, .warmupSteps, .lrWarmupSteps)
            lrDecaySteps = try first(Int.self, .endIter, .decaySteps, .lrDecaySteps)
            lrDecayStyle = try first(LRDecayStyle.self, .decayStyle, .lrDecayStyle)
            numSteps = try first(Int.self, .numIters, .numSteps)
            weightDecay = c.contains(.startWD) ? try WeightDecayState(
                startWD: first(Double.self, .startWD), endWD: first(Double.self, .endWD),
                wdIncrStyle: first(WeightDecayIncrementStyle.self, .wdIncrStyle),
                wdIncrSteps: first(Int.self, .wdIncrSteps)) : nil
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(maxLR, forKey: .maxLR)
            try c.encode(lrWarmupSteps, forKey: .lrWarmupSteps)
            try c.encode(numSteps, forKey: .numSteps)
            try c.encode(lrDecayStyle, forKey: .lrDecayStyle)
            try c.encode(lrDecaySteps, forKey: .lrDecaySteps)
            try c.encode(minLR, forKey: .minLR)
            if let wd = weightDecay {
                try c.encode(wd.startWD, forKey: .startWD)
                try c.encode(wd.endWD, forKey: .endWD)
                try c.encode(wd.wdIncrStyle, forKey: .wdIncrStyle)
                try c.encode(wd.wdIncrSteps, forKey: .wdIncrSteps)
            }
        }

        public init(maxLR: Double, lrWarmupSteps: Double, numSteps: Int, lrDecayStyle: LRDecayStyle,
                    lrDecaySteps: Int, minLR: Double, weightDecay: WeightDecayState?) {
            self.maxLR = maxLR
            self.lrWarmupSteps = lrWarmupSteps
            self.numSteps = numSteps
            self.lrDecayStyle = lrDecayStyle
            self.lrDecaySteps = lrDecaySteps
            self.minLR = minLR
            self.weightDecay = weightDecay
        }
    }

    /// What a checkpoint stores (`state_dict()`).
    public func state() -> State {
        let c = configuration
        return State(maxLR: c.maxLR, lrWarmupSteps: c.lrWarmupSteps, numSteps: numSteps, lrDecayStyle: c.lrDecayStyle,
                     lrDecaySteps: c.lrDecaySteps, minLR: c.minLR,
                     weightDecay: .init(startWD: c.startWD, endWD: c.endWD, wdIncrStyle: c.wdIncrStyle,
                                        wdIncrSteps: c.wdIncrSteps))
    }

    /// Megatron's `load_state_dict`: for each value, `--override-opt_param-scheduler` keeps this run's,
    /// `--use-checkpoint-opt_param-scheduler` takes the checkpoint's, and with neither the two must be
    /// equal. The checkpoint's sample count is added to this scheduler's. Nothing changes when it throws.
    ///
    /// Megatron sets the groups' lr and weight decay inside the load, before it loads the weight-decay
    /// values; here every value is computed when asked, so all of them follow the loaded state at once.
    public mutating func load(_ state: State) throws {
        var c = configuration
        c.maxLR = try checked(c.maxLR, state.maxLR, "learning rate")
        c.minLR = try checked(c.minLR, state.minLR, "minimum learning rate")
        c.lrWarmupSteps = try checked(c.lrWarmupSteps, state.lrWarmupSteps, "warmup iterations")
        c.lrDecaySteps = try checked(c.lrDecaySteps, state.lrDecaySteps, "total number of iterations")
        c.lrDecayStyle = try checked(c.lrDecayStyle, state.lrDecayStyle, "learning rate decay style")
        if let wd = state.weightDecay {
            c.startWD = try checked(c.startWD, wd.startWD, "start weight decay")
            c.endWD = try checked(c.endWD, wd.endWD, "end weight decay")
            c.wdIncrSteps = try checked(c.wdIncrSteps, wd.wdIncrSteps, "total number of weight decay iterations")
            c.wdIncrStyle = try checked(c.wdIncrStyle, wd.wdIncrStyle, "weight decay incr style")
        }
        configuration = c
        numSteps += state.numSteps
    }

    /// Megatron's `_check_and_set`.
    private func checked<T: Equatable>(_ mine: T, _ saved: T, _ name: String) throws -> T {
        try checked(mine, saved, name, equal: mine == saved)
    }

    /// A rate: this build's flags hold it in single precision, Megatron-LM's checkpoints in double (`--lr 1e-3` is
    /// 0.0010000000474974513 here, 0.001 there), so the two match when they are the same float.
    private func checked(_ mine: Double, _ saved: Double, _ name: String) throws -> Double {
        try checked(mine, saved, name, equal: Float(mine) == Float(saved))
    }

    private func checked<T>(_ mine: T, _ saved: T, _ name: String, equal: Bool) throws -> T {
        if configuration.overrideOptParamScheduler { return mine }
        if !configuration.useCheckpointOptParamScheduler && !equal {
            throw OptimizerSetupError("OptimizerParamScheduler: this run's \(name) \(mine) and the checkpoint's \(saved) "
                + "do not match (pass --use-checkpoint-opt_param-scheduler or --override-opt_param-scheduler)")
        }
        return saved
    }
}
