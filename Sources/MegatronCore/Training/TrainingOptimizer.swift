import MegatronParallel
import MegatronTensor

/// The optimizer of a training run as the step driver drives it, over one of three set-ups chosen from the
/// parallel state and the DDP configuration: a plain `MixedPrecisionOptimizer` (no data parallelism), the same
/// over Megatron's DDP gradient buffers (gradients all-reduced over the data-parallel ranks), or the
/// `DistributedOptimizer` (gradients reduce-scattered, state sharded over the data-parallel ranks).
///
/// ```swift
/// let optimizer = try TrainingOptimizer(model: model, groups: try ParamGroup.megatronDefault(model.namedParameters()),
///                                       rule: try AdamRule.adamW(beta1: 0.9, beta2: 0.95, eps: 1e-8), parallel: state)
/// let step = TrainingStep(model: model, optimizer: optimizer, parallel: state)
/// ```
public final class TrainingOptimizer {
    public let groups: [ParamGroup]
    /// Megatron's DDP over the data-parallel ranks; nil without data parallelism.
    public let ddp: DistributedDataParallel?
    /// The sharded optimizer (`useDistributedOptimizer`); nil otherwise.
    public let distributed: DistributedOptimizer?
    private let plain: MixedPrecisionOptimizer?
    /// Where the gradient norm and the inf/NaN check reach (the model-parallel group) and which parameters
    /// count once in it.
    private let gradStats: GradientStatsGroups

    /// - Parameters:
    ///   - groups: every parameter of `model`, each in one group (learning rate and weight decay).
    ///   - ddpConfig: how gradients are reduced over `parallel`'s data-parallel ranks (with context parallelism);
    ///     its `gradReduceInFP32` also picks the main gradients' dtype on one data-parallel rank.
    public init(model: GPTModel, groups: [ParamGroup], rule: UpdateRule, parallel: ParallelState,
                ddpConfig: DistributedDataParallelConfig = DistributedDataParallelConfig()) throws {
        self.groups = groups
        let experts = parallel.expert.size > 1 ? model.expertParameterNames() : []
        var gradStats = GradientStatsGroups(parallel, duplicatedParameters: model.tensorParallelDuplicatedParameters())
        gradStats.pipelineCopies = model.pipelineCopiedParameterNames
        if !experts.isEmpty {
            gradStats.expertParallel(parallel, experts: experts, sharded: ddpConfig.useDistributedOptimizer)
        }
        self.gradStats = gradStats
        let dataGroup = parallel.dataWithContext
        guard dataGroup.size > 1 else {
            plain = MixedPrecisionOptimizer(groups: groups, rule: rule,
                                            mainGradDType: ddpConfig.gradReduceInFP32 ? .float32 : .bfloat16)
            (ddp, distributed) = (nil, nil)
            return
        }
        let wrapper = try DistributedDataParallel(parameters: model.namedParameters(), config: ddpConfig,
                                                  dataParallelGroup: dataGroup,
                                                  sharedEmbeddings: Set(model.pipelineSharedEmbedding.map { [$0.name] } ?? []),
                                                  expertParameters: experts,
                                                  expertDataParallelGroup: experts.isEmpty ? nil : parallel.expertData)
        wrapper.waitForParamGathersInForward(of: model.forwardStages)
        ddp = wrapper
        if ddpConfig.useDistributedOptimizer {
            distributed = try DistributedOptimizer(ddp: wrapper, groups: groups, rule: rule, modelParallelStats: gradStats)
            plain = nil
        } else {
            plain = MixedPrecisionOptimizer(groups: groups, rule: rule, ownsMainGrads: false)
            distributed = nil
        }
    }

    /// Steps taken so far (skipped steps not counted).
    public var stepCount: Int { distributed?.stepCount ?? plain!.stepCount }

    /// Clears the gradients for a new iteration.
    public func zeroGrad() throws {
        if let ddp { try ddp.zeroGradBuffer() } else { plain!.zeroGrad() }
    }

    /// Runs `body` (micro-batch `m` of `count`'s forward and backward); with DDP every backward but the last
    /// skips the gradient reduction (Megatron's `no_sync`).
    public func microBatch<R>(_ m: Int, of count: Int, _ body: () throws -> R) rethrows -> R {
        guard let ddp, m < count - 1 else { return try body() }
        return try ddp.noSync(body)
    }

    /// Waits for the data-parallel gradient reduction (DDP all-reduce or reduce-scatter).
    public func finishGradientReduction() throws { try ddp?.finishGradSync() }

    /// Where parameter `name`'s gradient (`parameter`'s) is once the reduction finished: its view of the DDP
    /// buffer, or with the distributed optimizer this rank's reduced shard of it.
    public func reducedGradient(of name: String, _ parameter: Tensor) throws -> Tensor {
        if let ddp { return try ddp.reducedGradient(ofParameter: name) }
        guard let grad = parameter.grad else { throw TrainingStepError("parameter '\(name)' has no gradient") }
        return grad
    }

    /// Unscales by `lossScale`, computes the global gradient norm, skips on inf/NaN, clips and updates.
    public func step(scheduler: OptimizerParamScheduler, clipGrad: Float, lossScale: Float) throws -> MixedPrecisionOptimizer.StepReport {
        if let distributed { return try distributed.step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale) }
        return try plain!.step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale, gradStats: gradStats)
    }

    /// The whole optimizer state (gathered from every data-parallel shard; a collective then).
    public func stateTensors() throws -> [String: Tensor] {
        try distributed?.fullStateDict() ?? plain!.stateTensors()
    }

    public func loadState(_ tensors: [String: Tensor], stepCount: Int) throws {
        if let distributed { try distributed.loadFullStateDict(tensors, stepCount: stepCount) } else {
            try plain!.loadState(tensors, stepCount: stepCount)
        }
    }

    /// The L2 norm of the fp32 master weights over every rank's share (a collective).
    public func parameterNorm() throws -> Double {
        try distributed?.parameterNorm() ?? plain!.parameterNorm(gradStats: gradStats)
    }

    /// Zeros in the reduced main gradients of the last step (a collective).
    public func gradientZeroCount() throws -> Int {
        try distributed?.gradientZeroCount() ?? plain!.gradientZeroCount(gradStats: gradStats)
    }

    /// Waits for parameter all-gathers still in flight (overlapped parameter gathers) before parameters are read.
    public func finishParameterUpdates() throws { try ddp?.finishParamGather() }
}
