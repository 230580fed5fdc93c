import MegatronCore
import MegatronParallel
import MegatronTensor

extension TrainingOptimizer {
    /// The optimizer `arguments` ask for over `model`: its parameter groups (`--decoupled-lr`,
    /// `--apply-wd-to-qk-layernorm`), update rule (`--optimizer`, Adam's betas and eps, SGD's momentum) and
    /// DDP set-up (`--overlap-grad-reduce`, `--use-distributed-optimizer`, ...), over `parallel`'s groups.
    convenience init(_ a: PretrainArguments, model: GPTModel, parallel: ParallelState) throws {
        let named = model.namedParameters()
        // --decoupled-lr / --decoupled-min-lr: the word embeddings and the untied output layer follow their own schedule bounds.
        // --apply-wd-to-qk-layernorm: the q/k layer-norm weights stay in the weight-decayed group.
        let groupRule = ParamGroupRule(applyWeightDecayToQKLayerNorm: a.applyWDToQKLayernorm,
                                       decoupledLR: a.decoupledLR.map(Double.init), decoupledMinLR: a.decoupledMinLR.map(Double.init))
        let groups = try ParamGroup.megatronDefault(named, rule: groupRule, embeddingOrOutput: model.embeddingOrOutputParameterNames)
        let rule: UpdateRule
        switch a.optimizer {
        case .sgd: rule = try SGDRule(momentum: Double(a.sgdMomentum))
        case .adam: rule = try AdamRule.adamW(beta1: Double(a.adamBeta1), beta2: Double(a.adamBeta2), eps: Double(a.adamEps))
        }
        // --grad-reduce-in-bf16 (with --bf16): Megatron's DDP grad buffers hold bf16 (its grad_reduce_in_fp32 off).
        let config = DistributedDataParallelConfig(overlapGradReduce: a.overlapGradReduce,
                                                   useDistributedOptimizer: a.useDistributedOptimizer,
                                                   overlapParamGather: a.overlapParamGather,
                                                   averageInCollective: a.ddpAverageInCollective, bucketSize: a.ddpBucketSize,
                                                   gradReduceInFP32: !(a.bf16 && a.gradReduceInBF16))
        try self.init(model: model, groups: groups, rule: rule, parallel: parallel, ddpConfig: config)
    }
}
