/// Megatron's loss scaler (`MegatronGradScaler`): the loss is multiplied by `scale` before backward,
/// gradients by `inverseScale` after, and `update(foundInf:)` runs once per iteration.
public protocol GradScaler {
    /// fp32, as Megatron keeps it in a one-element fp32 tensor.
    var scale: Float { get }
    /// Megatron: `scale.double().reciprocal().float()`.
    var inverseScale: Float { get }
    mutating func update(foundInf: Bool)
}

extension GradScaler {
    public var inverseScale: Float { Float(1 / Double(scale)) }
}

/// `--loss-scale S`: a fixed scale, never adjusted (its state dict is empty).
public struct ConstantGradScaler: GradScaler {
    public let scale: Float

    public init(scale: Float) throws {
        try require(scale > 0, "--loss-scale must be > 0, got \(scale)")
        self.scale = scale
    }

    public mutating func update(foundInf: Bool) {}
}

/// Megatron's `DynamicGradScaler` (fp16 without `--loss-scale`): after `hysteresis` iterations with
/// inf/NaN gradients (not necessarily in a row: only a clean growth interval resets the count) the
/// scale is multiplied by `backoffFactor` on every further one, down to `minScale`; after
/// `growthInterval` clean iterations in a row it is multiplied by `growthFactor`.
///
/// ```swift
/// var scaler = try DynamicGradScaler()          // Megatron's defaults
/// let skip = NonFiniteGradients.unscaleAndCheck(grads, inverseScale: scaler.inverseScale)
/// scaler.update(foundInf: skip)
/// ```
public struct DynamicGradScaler: GradScaler, Codable, Equatable {
    public private(set) var scale: Float
    public let minScale: Float
    public let growthFactor: Float
    public let backoffFactor: Float
    public let growthInterval: Int
    public let hysteresis: Int
    /// Clean iterations since the last inf/NaN or growth.
    public private(set) var growthTracker = 0
    /// Inf/NaN iterations left before the scale backs off.
    public private(set) var hysteresisTracker: Int

    /// Defaults are Megatron's: `--initial-loss-scale 2^32`, `--min-loss-scale 1`,
    /// `--loss-scale-window 1000`, `--hysteresis 2`, growth 2, backoff 0.5.
    public init(initialScale: Float = 4_294_967_296, minScale: Float = 1, growthFactor: Float = 2,
                backoffFactor: Float = 0.5, growthInterval: Int = 1000, hysteresis: Int = 2) throws {
        try require(initialScale > 0, "--initial-loss-scale must be > 0, got \(initialScale)")
        try require(minScale > 0 && minScale <= initialScale,
                    "--min-loss-scale must be in (0, --initial-loss-scale \(initialScale)], got \(minScale)")
        try require(growthFactor > 1, "the loss-scale growth factor must be > 1, got \(growthFactor)")
        try require(backoffFactor > 0 && backoffFactor < 1, "the loss-scale backoff factor must be in (0, 1), got \(backoffFactor)")
        try require(growthInterval > 0, "--loss-scale-window must be > 0, got \(growthInterval)")
        try require(hysteresis > 0, "--hysteresis must be > 0, got \(hysteresis)")
        scale = initialScale
        self.minScale = minScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
        self.hysteresis = hysteresis
        hysteresisTracker = hysteresis
    }

    public mutating func update(foundInf: Bool) {
        if foundInf {
            growthTracker = 0
            hysteresisTracker -= 1
            if hysteresisTracker <= 0 { scale = max(scale * backoffFactor, minScale) }
        } else {
            growthTracker += 1
            if growthTracker == growthInterval {
                growthTracker = 0
                hysteresisTracker = hysteresis
                scale *= growthFactor
            }
        }
    }

    /// Megatron's `state_dict()`: the scale and both trackers.
    public struct State: Codable, Equatable {
        public var scale: Float
        public var growthTracker: Int
        public var hysteresisTracker: Int

        enum CodingKeys: String, CodingKey {
            case scale, growthTracker = "growth_tracker", hysteresisTracker = "hysteresis_tracker"
        }

        public init(scale: Float, growthTracker: Int, hysteresisTracker: Int) {
            self.scale = scale
            self.growthTracker = growthTracker
            self.hysteresisTracker = hysteresisTracker
        }
    }

    public func state() -> State {
        State(scale: scale, growthTracker: growthTracker, hysteresisTracker: hysteresisTracker)
    }

    /// Restores the scale and trackers; the factors and intervals stay this run's, as in Megatron.
    public mutating func load(_ state: State) throws {
        try require(state.scale > 0 && state.scale.isFinite, "saved loss scale must be finite and > 0, got \(state.scale)")
        scale = state.scale
        growthTracker = state.growthTracker
        hysteresisTracker = state.hysteresisTracker
    }
}
