/// The Megatron flags that build the scheduler, with Megatron's defaults; `configuration()` converts
/// iterations to samples as Megatron's `get_optimizer_param_scheduler` does.
///
/// ```swift
/// let args = ScheduleArguments(trainIters: 500, globalBatchSize: 32, lr: 6e-4, lrDecayStyle: .cosine,
///                              lrWarmupFraction: 0.01)
/// var scheduler = try OptimizerParamScheduler(try args.configuration())
/// ```
public struct ScheduleArguments {
    public var trainIters: Int?
    public var trainSamples: Int?
    public var globalBatchSize: Int
    public var lr: Double
    public var minLR: Double
    public var lrWarmupInit: Double
    public var lrDecayStyle: LRDecayStyle
    public var lrDecayIters: Int?
    public var lrDecaySamples: Int?
    public var lrWarmupIters: Int
    public var lrWarmupSamples: Int
    public var lrWarmupFraction: Double?
    public var lrWSDDecayStyle: WSDDecayStyle
    public var lrWSDDecayIters: Int?
    public var lrWSDDecaySamples: Int?
    public var weightDecay: Double
    public var startWeightDecay: Double?
    public var endWeightDecay: Double?
    public var weightDecayIncrStyle: WeightDecayIncrementStyle
    public var useCheckpointOptParamScheduler: Bool
    public var overrideOptParamScheduler: Bool

    public init(trainIters: Int? = nil, trainSamples: Int? = nil, globalBatchSize: Int, lr: Double,
                minLR: Double = 0, lrWarmupInit: Double = 0, lrDecayStyle: LRDecayStyle = .linear,
                lrDecayIters: Int? = nil, lrDecaySamples: Int? = nil, lrWarmupIters: Int = 0,
                lrWarmupSamples: Int = 0, lrWarmupFraction: Double? = nil,
                lrWSDDecayStyle: WSDDecayStyle = .exponential, lrWSDDecayIters: Int? = nil,
                lrWSDDecaySamples: Int? = nil, weightDecay: Double = 0.01, startWeightDecay: Double? = nil,
                endWeightDecay: Double? = nil, weightDecayIncrStyle: WeightDecayIncrementStyle = .constant,
                useCheckpointOptParamScheduler: Bool = false, overrideOptParamScheduler: Bool = false) {
        self.trainIters = trainIters
        self.trainSamples = trainSamples
        self.globalBatchSize = globalBatchSize
        self.lr = lr
        self.minLR = minLR
        self.lrWarmupInit = lrWarmupInit
        self.lrDecayStyle = lrDecayStyle
        self.lrDecayIters = lrDecayIters
        self.lrDecaySamples = lrDecaySamples
        self.lrWarmupIters = lrWarmupIters
        self.lrWarmupSamples = lrWarmupSamples
        self.lrWarmupFraction = lrWarmupFraction
        self.lrWSDDecayStyle = lrWSDDecayStyle
        self.lrWSDDecayIters = lrWSDDecayIters
        self.lrWSDDecaySamples = lrWSDDecaySamples
        self.weightDecay = weightDecay
        self.startWeightDecay = startWeightDecay
        self.endWeightDecay = endWeightDecay
        self.weightDecayIncrStyle = weightDecayIncrStyle
        self.useCheckpointOptParamScheduler = useCheckpointOptParamScheduler
        self.overrideOptParamScheduler = overrideOptParamScheduler
    }

    /// The scheduler's configuration, in samples; throws for the flag combinations Megatron rejects.
    public func configuration() throws -> OptimizerParamScheduler.Configuration {
        let (startWD, endWD) = try weightDecayRange()
        let decaySteps: Int, wdIncrSteps: Int, wsdSteps: Int?, warmupSteps: Double
        if let trainIters, trainIters > 0 {
            try require(trainSamples == nil, "--train-iters and --train-samples are both set; expected iteration-based training")
            try require(lrDecaySamples == nil, "--lr-decay-samples is set with --train-iters; expected --lr-decay-iters")
            try require(lrWarmupSamples == 0, "--lr-warmup-samples is set with --train-iters; expected --lr-warmup-iters")
            try require(lrWarmupFraction == nil || lrWarmupIters == 0,
                        "can only specify one of --lr-warmup-fraction and --lr-warmup-iters")
            decaySteps = (lrDecayIters ?? trainIters) * globalBatchSize
            wdIncrSteps = trainIters * globalBatchSize
            wsdSteps = lrWSDDecayIters.map { $0 * globalBatchSize }
            warmupSteps = lrWarmupFraction.map { $0 * Double(decaySteps) } ?? Double(lrWarmupIters * globalBatchSize)
        } else if let trainSamples, trainSamples > 0 {
            try require(lrDecayIters == nil, "--lr-decay-iters is set with --train-samples; expected --lr-decay-samples")
            try require(lrWarmupIters == 0, "--lr-warmup-iters is set with --train-samples; expected --lr-warmup-samples")
            try require(lrWarmupFraction == nil || lrWarmupSamples == 0,
                        "can only specify one of --lr-warmup-fraction and --lr-warmup-samples")
            decaySteps = lrDecaySamples ?? trainSamples
            wdIncrSteps = trainSamples
            wsdSteps = lrWSDDecaySamples
            warmupSteps = lrWarmupFraction.map { $0 * Double(decaySteps) } ?? Double(lrWarmupSamples)
        } else {
            throw OptimizerSetupError("either --train-iters or --train-samples should be provided")
        }
        return .init(initLR: lrWarmupInit, maxLR: lr, minLR: minLR, lrWarmupSteps: warmupSteps,
                     lrDecaySteps: decaySteps, lrDecayStyle: lrDecayStyle, startWD: startWD, endWD: endWD,
                     wdIncrSteps: wdIncrSteps, wdIncrStyle: weightDecayIncrStyle,
                     useCheckpointOptParamScheduler: useCheckpointOptParamScheduler,
                     overrideOptParamScheduler: overrideOptParamScheduler,
                     wsdDecaySteps: wsdSteps, lrWSDDecayStyle: lrWSDDecayStyle)
    }

    /// Megatron: the constant style uses `--weight-decay` and forbids start/end; the others need both.
    private func weightDecayRange() throws -> (Double, Double) {
        if weightDecayIncrStyle == .constant {
            try require(startWeightDecay == nil && endWeightDecay == nil,
                        "--start-weight-decay / --end-weight-decay need --weight-decay-incr-style linear or cosine")
            return (weightDecay, weightDecay)
        }
        guard let startWeightDecay, let endWeightDecay else {
            throw OptimizerSetupError("--weight-decay-incr-style \(weightDecayIncrStyle.rawValue) needs --start-weight-decay and --end-weight-decay")
        }
        return (startWeightDecay, endWeightDecay)
    }
}
