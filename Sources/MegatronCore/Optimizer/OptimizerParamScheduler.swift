import Foundation

/// Megatron's `OptimizerParamScheduler`: linear warmup of the learning rate from `initLR` to `maxLR`,
/// then constant, linear, cosine, inverse-square-root or WSD decay to `minLR`, and weight decay moving
/// from `startWD` to `endWD`. It counts samples: each `step(_:)` adds one global batch.
///
/// ```swift
/// var scheduler = try OptimizerParamScheduler(
///     try ScheduleArguments(trainIters: 1000, globalBatchSize: 256, lr: 3e-4, minLR: 3e-5,
///                           lrDecayStyle: .cosine, lrWarmupIters: 100).configuration())
/// for _ in 0..<1000 {
///     optimizer.step(lr: scheduler.learningRate(group: 0), ...)
///     scheduler.step(256)
/// }
/// ```
public struct OptimizerParamScheduler {
    /// The scheduler's constructor arguments, with Megatron's names and class defaults.
    public struct Configuration: Equatable {
        public var initLR: Double
        public var maxLR: Double
        public var minLR: Double
        /// Fractional when it comes from `--lr-warmup-fraction`.
        public var lrWarmupSteps: Double
        public var lrDecaySteps: Int
        public var lrDecayStyle: LRDecayStyle
        public var startWD: Double
        public var endWD: Double
        public var wdIncrSteps: Int
        public var wdIncrStyle: WeightDecayIncrementStyle
        /// On load, take the checkpoint's values (`--use-checkpoint-opt_param-scheduler`).
        public var useCheckpointOptParamScheduler: Bool
        /// On load, keep these values (`--override-opt_param-scheduler`).
        public var overrideOptParamScheduler: Bool
        public var wsdDecaySteps: Int?
        public var lrWSDDecayStyle: WSDDecayStyle

        public init(initLR: Double = 0, maxLR: Double, minLR: Double = 0, lrWarmupSteps: Double = 0,
                    lrDecaySteps: Int, lrDecayStyle: LRDecayStyle, startWD: Double, endWD: Double,
                    wdIncrSteps: Int, wdIncrStyle: WeightDecayIncrementStyle = .constant,
                    useCheckpointOptParamScheduler: Bool = true, overrideOptParamScheduler: Bool = false,
                    wsdDecaySteps: Int? = nil, lrWSDDecayStyle: WSDDecayStyle = .exponential) {
            self.initLR = initLR
            self.maxLR = maxLR
            self.minLR = minLR
            self.lrWarmupSteps = lrWarmupSteps
            self.lrDecaySteps = lrDecaySteps
            self.lrDecayStyle = lrDecayStyle
            self.startWD = startWD
            self.endWD = endWD
            self.wdIncrSteps = wdIncrSteps
            self.wdIncrStyle = wdIncrStyle
            self.useCheckpointOptParamScheduler = useCheckpointOptParamScheduler
            self.overrideOptParamScheduler = overrideOptParamScheduler
            self.wsdDecaySteps = wsdDecaySteps
            self.lrWSDDecayStyle = lrWSDDecayStyle
        }
    }

    /// The current values (a checkpoint load may replace some).
    public internal(set) var configuration: Configuration
    /// The parameter groups' overrides (`ParamGroupRule.groups` gives them in Megatron's order).
    public let groups: [ParamGroupOverride]
    /// Samples consumed so far.
    public internal(set) var numSteps = 0

    public init(_ configuration: Configuration, groups: [ParamGroupOverride] = [ParamGroupOverride()]) throws {
        try Self.validate(configuration, groups: groups)
        self.configuration = configuration
        self.groups = groups
    }

    /// Adds `increment` samples (one global batch per iteration).
    public mutating func step(_ increment: Int) {
        numSteps += increment
    }

    /// The learning rate of parameter group `group` now.
    public func learningRate(group: Int) -> Double {
        let g = groups[group]
        let lr = learningRate(maxLR: g.maxLR ?? configuration.maxLR, minLR: g.minLR ?? configuration.minLR)
        return lr * (g.lrMult ?? 1)
    }

    /// The weight decay of parameter group `group` now (its `wdMult` applied).
    public func weightDecay(group: Int) -> Double {
        let g = groups[group]
        return weightDecay(startWD: g.startWD ?? configuration.startWD, endWD: g.endWD ?? configuration.endWD)
            * (g.wdMult ?? 1)
    }

    /// The learning rate Megatron logs: that of the first group on the default schedule.
    public var loggedLearningRate: Double? {
        groups.firstIndex { $0.usesDefaultLRSchedule }.map { learningRate(group: $0) }
    }

    /// Megatron's `get_lr` for a group with these bounds.
    public func learningRate(maxLR: Double, minLR: Double) -> Double {
        let c = configuration
        if c.lrWarmupSteps > 0 && Double(numSteps) <= c.lrWarmupSteps {
            return c.initLR + (maxLR - c.initLR) * Double(numSteps) / c.lrWarmupSteps
        }
        if c.lrDecayStyle == .constant { return maxLR }
        if numSteps > c.lrDecaySteps { return minLR }
        if c.lrDecayStyle == .inverseSquareRoot {
            let warmup = max(c.lrWarmupSteps, 1), steps = Double(max(numSteps, 1))
            return max(minLR, maxLR * warmup.squareRoot() / steps.squareRoot())
        }
        let ratio = (Double(numSteps) - c.lrWarmupSteps) / (Double(c.lrDecaySteps) - c.lrWarmupSteps)
        let coefficient = c.lrDecayStyle.coefficient(ratio: ratio, numSteps: numSteps, decaySteps: c.lrDecaySteps,
                                                     wsd: (c.wsdDecaySteps ?? 0, c.lrWSDDecayStyle))
        return minLR + coefficient * (maxLR - minLR)
    }

    /// Megatron's `get_wd` for a group with these bounds.
    public func weightDecay(startWD: Double, endWD: Double) -> Double {
        let c = configuration
        if numSteps > c.wdIncrSteps || c.wdIncrStyle == .constant { return endWD }
        let ratio = Double(numSteps) / Double(c.wdIncrSteps)
        let coefficient = c.wdIncrStyle == .linear ? ratio : 0.5 * (cos(Double.pi * (1 - ratio)) + 1)
        return startWD + coefficient * (endWD - startWD)
    }

    private static func validate(_ c: Configuration, groups: [ParamGroupOverride]) throws {
        try require(c.minLR >= 0, "--min-lr must be >= 0, got \(c.minLR)")
        try require(c.maxLR >= c.minLR, "--lr (\(c.maxLR)) must be >= --min-lr (\(c.minLR))")
        try require(c.initLR <= c.maxLR, "--lr-warmup-init (\(c.initLR)) must be <= --lr (\(c.maxLR))")
        try require(c.lrDecaySteps > 0, "the lr decay length must be > 0 samples, got \(c.lrDecaySteps)")
        try require(c.lrWarmupSteps < Double(c.lrDecaySteps),
                    "lr warmup (\(c.lrWarmupSteps) samples) must be shorter than lr decay (\(c.lrDecaySteps) samples)")
        if c.lrDecayStyle == .wsd {
            try require(c.wsdDecaySteps != nil, "--lr-decay-style WSD needs --lr-wsd-decay-iters or --lr-wsd-decay-samples")
            try require((0...c.lrDecaySteps).contains(c.wsdDecaySteps!),
                        "the WSD anneal (\(c.wsdDecaySteps!) samples) must be within the lr decay length (\(c.lrDecaySteps))")
        }
        try require(c.startWD >= 0, "--start-weight-decay must be >= 0, got \(c.startWD)")
        try require(c.endWD >= c.startWD, "--end-weight-decay (\(c.endWD)) must be >= --start-weight-decay (\(c.startWD))")
        if c.wdIncrStyle == .constant {
            for g in [ParamGroupOverride()] + groups {
                let (s, e) = (g.startWD ?? c.startWD, g.endWD ?? c.endWD)
                try require(s == e, "--weight-decay-incr-style constant needs equal start and end weight decay, got \(s) and \(e)")
            }
        } else {
            try require(c.wdIncrSteps > 0, "the weight decay increment length must be > 0 samples, got \(c.wdIncrSteps)")
        }
        try require(!(c.overrideOptParamScheduler && c.useCheckpointOptParamScheduler),
                    "both --override-opt_param-scheduler and --use-checkpoint-opt_param-scheduler are set")
    }
}
