import MegatronCore

/// Iteration count, global batch size (ramped up with `--rampup-batch-size`, or stepped with
/// `--step-batch-size-schedule`) and Megatron's learning-rate / weight-decay scheduler of a run.
struct TrainingSchedule {
    let trainIters: Int
    /// `--global-batch-size`: the batch after any ramp-up. With a step schedule, one micro-batch per data-parallel
    /// rank, as Megatron sets it (the iteration-based learning-rate schedule counts in these samples).
    let globalBatchSize: Int
    /// The ramp-up or step schedule; nil for a constant global batch.
    let batchSizes: (any BatchSizeSchedule)?
    /// Micro-batch size x data-parallel size: what every global batch must be a multiple of.
    let microBatchTimesDataParallel: Int
    var scheduler: OptimizerParamScheduler

    /// Megatron's default global batch is one micro-batch per data-parallel rank.
    init(_ a: PretrainArguments, groups: [ParamGroup], dataParallelSize: Int = 1) throws {
        globalBatchSize = a.globalBatchSize ?? a.microBatchSize * dataParallelSize
        batchSizes = try a.batchSizeSchedule(dataParallelSize: dataParallelSize)
        microBatchTimesDataParallel = a.microBatchSize * dataParallelSize
        if let batchSizes, let samples = a.trainSamples {
            trainIters = batchSizes.iterations(trainSamples: samples)
        } else if let iterations = a.trainIters {
            trainIters = iterations
        } else {
            // Megatron's update_train_iters: whole global batches only; the remainder of the samples is not trained.
            trainIters = a.trainSamples! / globalBatchSize
            guard trainIters > 0 else {
                throw ArgumentError("--train-samples (\(a.trainSamples!)) is less than one global batch (\(globalBatchSize)): no iteration would run")
            }
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
        batchSizes?.batchSize(consumedSamples: consumedSamples) ?? globalBatchSize
    }

    /// Megatron's checks of a scheduled batch size as the loop reaches it (`update_num_microbatches` with its
    /// consistency check): it never shrinks from `previous` (nil on the first iteration), and it splits into
    /// micro-batches on every data-parallel rank. Earlier entries of a step schedule are not checked, so a run
    /// resumed on more ranks may skip sizes it could not run.
    func check(_ batchSize: Int, after previous: Int?, consumedSamples: Int) throws {
        if let previous, batchSize < previous {
            throw ArgumentError("--step-batch-size-schedule: the global batch size may not decrease, from \(previous) "
                + "to \(batchSize) at \(consumedSamples) consumed samples (as in Megatron)")
        }
        guard batchSize % microBatchTimesDataParallel == 0 else {
            throw ArgumentError("--step-batch-size-schedule: the global batch size \(batchSize) (at \(consumedSamples) consumed "
                + "samples) is not a multiple of --micro-batch-size x data-parallel size (\(microBatchTimesDataParallel))")
        }
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
