import MegatronCore

/// Iteration count, global batch size (ramped up with `--rampup-batch-size`) and Megatron's learning-rate /
/// weight-decay scheduler of a run.
struct TrainingSchedule {
    let trainIters: Int
    /// The global batch size after any ramp-up.
    let globalBatchSize: Int
    let rampup: BatchSizeRampup?
    var scheduler: OptimizerParamScheduler

    /// Megatron's default global batch is one micro-batch per data-parallel rank.
    init(_ a: PretrainArguments, groups: [ParamGroup], dataParallelSize: Int = 1) throws {
        globalBatchSize = a.globalBatchSize ?? a.microBatchSize * dataParallelSize
        rampup = try a.batchSizeRampup(dataParallelSize: dataParallelSize)
        if let rampup, let samples = a.trainSamples {
            trainIters = rampup.iterations(trainSamples: samples)
        } else {
            trainIters = a.trainIters ?? (a.trainSamples! + globalBatchSize - 1) / globalBatchSize
        }
        scheduler = try Self.scheduler(a, globalBatchSize: globalBatchSize, groups: groups.map(\.override))
    }

    /// The scheduler the flags describe, or the reason Megatron's scheduler refuses them (checked again at
    /// start-up, before the model is built, with the default parameter group).
    static func scheduler(_ a: PretrainArguments, globalBatchSize: Int,
                          groups: [ParamGroupOverride] = [ParamGroupOverride()]) throws -> OptimizerParamScheduler {
        let arguments = ScheduleArguments(
            trainIters: a.trainIters, trainSamples: a.trainSamples, globalBatchSize: globalBatchSize,
            lr: Double(a.lr!), minLR: Double(a.minLR), lrWarmupInit: Double(a.lrWarmupInit),
            lrDecayStyle: a.lrDecayStyle, lrDecayIters: a.lrDecayIters,
            lrDecaySamples: a.lrDecaySamples, lrWarmupIters: a.lrWarmupIters, lrWarmupSamples: a.lrWarmupSamples,
            lrWarmupFraction: a.lrWarmupFraction.map(Double.init),
            lrWSDDecayStyle: a.lrWSDDecayStyle, lrWSDDecayIters: a.lrWSDDecayIters,
            lrWSDDecaySamples: a.lrWSDDecaySamples, weightDecay: Double(a.weightDecay),
            startWeightDecay: a.startWeightDecay.map(Double.init), endWeightDecay: a.endWeightDecay.map(Double.init),
            weightDecayIncrStyle: a.weightDecayIncrStyle,
            useCheckpointOptParamScheduler: a.useCheckpointOptParamScheduler,
            overrideOptParamScheduler: a.overrideOptParamScheduler)
        do {
            return try OptimizerParamScheduler(try arguments.configuration(), groups: groups)
        } catch let error as OptimizerSetupError {
            throw ArgumentError(error.description)
        }
    }

    /// The global batch size of the iteration that starts after `consumedSamples` samples.
    func batchSize(consumedSamples: Int) -> Int {
        rampup?.batchSize(consumedSamples: consumedSamples) ?? globalBatchSize
    }

    /// The learning rate Megatron logs for the coming update.
    var loggedLearningRate: Float { Float(scheduler.loggedLearningRate ?? scheduler.learningRate(group: 0)) }
}

/// The fp16 loss scaler: constant with `--loss-scale`, else Megatron's dynamic scaler; nil for fp32 / bf16.
func makeGradScaler(_ a: PretrainArguments) throws -> (any GradScaler)? {
    guard a.fp16 else { return nil }
    if let scale = a.lossScale { return try ConstantGradScaler(scale: scale) }
    return try DynamicGradScaler(initialScale: a.initialLossScale, minScale: a.minLossScale,
                                 growthInterval: a.lossScaleWindow, hysteresis: a.hysteresis)
}
