import MegatronCore
import MegatronParallel
import MegatronTensor

/// The groups a training rank works with: data-parallel ranks see different samples and reduce
/// gradients; tensor-parallel ranks hold slices of one model. A single-GPU run has neither.
public struct TrainingGroups {
    public var world: Communicator
    public var tensor: Communicator?
    public var data: Communicator?
    public var sequenceParallel: Bool

    public init(world: Communicator, tensor: Communicator? = nil, data: Communicator? = nil, sequenceParallel: Bool = false) {
        self.world = world
        self.tensor = tensor
        self.data = data
        self.sequenceParallel = sequenceParallel
    }

    public var dataParallelSize: Int { data?.size ?? 1 }
    public var dataParallelRank: Int { data?.rank ?? 0 }
    public var tensorParallelSize: Int { tensor?.size ?? 1 }
}

/// The optimizer of a training run as the loop drives it, over one of three set-ups: a plain
/// `MixedPrecisionOptimizer` (one rank), the same over Megatron's DDP gradient buffers (data
/// parallel, gradients all-reduced), or the `DistributedOptimizer` (gradients reduce-scattered,
/// state sharded over the data-parallel ranks).
final class TrainingOptimizer {
    let groups: [ParamGroup]
    private let plain: MixedPrecisionOptimizer?
    private let distributed: DistributedOptimizer?
    private let ddp: DistributedDataParallel?
    private let gradStats: GradientStatsGroups
    /// Parameters whose gradients are partial sums over tensor-parallel ranks (sequence-parallel norms).
    private let partialGradients: () throws -> Void

    init(_ a: PretrainArguments, model: GPTModel, groups parallel: TrainingGroups?, gradStats: GradientStatsGroups,
         partialGradients: @escaping () throws -> Void = {}) throws {
        let named = model.namedParameters()
        // --decoupled-lr / --decoupled-min-lr: the word embeddings and the untied output layer follow their own schedule bounds.
        // --apply-wd-to-qk-layernorm: the q/k layer-norm weights stay in the weight-decayed group.
        let groupRule = ParamGroupRule(applyWeightDecayToQKLayerNorm: a.applyWDToQKLayernorm,
                                       decoupledLR: a.decoupledLR.map(Double.init), decoupledMinLR: a.decoupledMinLR.map(Double.init))
        groups = try ParamGroup.megatronDefault(named, rule: groupRule, embeddingOrOutput: model.embeddingOrOutputParameterNames)
        let rule: UpdateRule
        switch a.optimizer {
        case .sgd: rule = try SGDRule(momentum: Double(a.sgdMomentum))
        case .adam: rule = try AdamRule.adamW(beta1: Double(a.adamBeta1), beta2: Double(a.adamBeta2), eps: Double(a.adamEps))
        }
        self.gradStats = gradStats
        self.partialGradients = partialGradients
        // --grad-reduce-in-bf16 (with --bf16): Megatron's DDP grad buffers hold bf16 (its grad_reduce_in_fp32 off).
        let gradReduceInFP32 = !(a.bf16 && a.gradReduceInBF16)
        guard let dataGroup = parallel?.data, dataGroup.size > 1 else {
            plain = MixedPrecisionOptimizer(groups: groups, rule: rule, mainGradDType: gradReduceInFP32 ? .float32 : .bfloat16)
            (ddp, distributed) = (nil, nil)
            return
        }
        let config = DistributedDataParallelConfig(overlapGradReduce: a.overlapGradReduce,
                                                   useDistributedOptimizer: a.useDistributedOptimizer,
                                                   overlapParamGather: a.overlapParamGather,
                                                   averageInCollective: a.ddpAverageInCollective, bucketSize: a.ddpBucketSize,
                                                   gradReduceInFP32: gradReduceInFP32)
        let wrapper = try DistributedDataParallel(parameters: named, config: config, dataParallelGroup: dataGroup)
        wrapper.waitForParamGathersInForward(of: model.forwardStages)
        ddp = wrapper
        if a.useDistributedOptimizer {
            distributed = try DistributedOptimizer(ddp: wrapper, groups: groups, rule: rule, modelParallelStats: gradStats)
            plain = nil
        } else {
            plain = MixedPrecisionOptimizer(groups: groups, rule: rule, ownsMainGrads: false)
            distributed = nil
        }
    }

    var stepCount: Int { distributed?.stepCount ?? plain!.stepCount }

    func zeroGrad() throws {
        if let ddp { try ddp.zeroGradBuffer() } else { plain!.zeroGrad() }
    }

    /// Runs micro-batch `m` of `count`'s forward and backward; with DDP every backward but the last
    /// skips the gradient reduction (Megatron's `no_sync`).
    func microBatch<R>(_ m: Int, of count: Int, _ body: () throws -> R) rethrows -> R {
        guard let ddp, m < count - 1 else { return try body() }
        return try ddp.noSync(body)
    }

    func step(scheduler: OptimizerParamScheduler, clipGrad: Float, lossScale: Float) throws -> MixedPrecisionOptimizer.StepReport {
        try partialGradients()
        if let distributed { return try distributed.step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale) }
        try ddp?.finishGradSync()
        return try plain!.step(scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale, gradStats: gradStats)
    }

    /// [loss sum, token count] of this rank's micro-batches, being summed over the data-parallel ranks.
    struct LossTotals {
        let totals: Tensor
        let reduction: CollectiveWork?

        /// Orders the caller's stream after the sum and starts the copy to the host, read with `tensor()`.
        func startCopyToHost() throws -> PendingHostTensor {
            try reduction?.wait()
            return totals.startCopyToHost()
        }
    }

    /// Starts summing [loss sum, token count] over the data-parallel ranks (one collective). Nothing waits
    /// for it until `LossTotals.startCopyToHost`: waiting at once would hold the compute stream until the
    /// slowest rank reaches this point.
    func startLossTotals(_ lossSum: Tensor, tokens: Int) throws -> LossTotals {
        let totals = withoutGrad {
            Ops.concat([lossSum.cast(to: .float32).reshaped([1]), Tensor(shape: [1], values: [Float(tokens)]).to(lossSum.device)],
                       dim: 0)
        }
        return LossTotals(totals: totals, reduction: try ddp?.dataParallelGroup.allReduce(totals, op: .sum))
    }

    /// The whole optimizer state (gathered from every data-parallel shard; a collective then).
    func stateTensors() throws -> [String: Tensor] {
        try distributed?.fullStateDict() ?? plain!.stateTensors()
    }

    func loadState(_ tensors: [String: Tensor], stepCount: Int) throws {
        if let distributed { try distributed.loadFullStateDict(tensors, stepCount: stepCount) } else {
            try plain!.loadState(tensors, stepCount: stepCount)
        }
    }

    /// `--log-params-norm`: the L2 norm of the fp32 master weights over every rank's share (a collective).
    func parameterNorm() throws -> Double {
        try distributed?.parameterNorm() ?? plain!.parameterNorm(gradStats: gradStats)
    }

    /// `--log-num-zeros-in-grad`: zeros in the reduced main gradients of the last step (a collective).
    func gradientZeroCount() throws -> Int {
        try distributed?.gradientZeroCount() ?? plain!.gradientZeroCount(gradStats: gradStats)
    }

    /// Waits for parameter all-gathers still in flight (`--overlap-param-gather`) before parameters are read.
    func finishParameterUpdates() throws { try ddp?.finishParamGather() }
}
