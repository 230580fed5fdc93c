import MegatronCUDA
import MegatronTensor

/// The multi-tensor AdamW step on a GPU, over lists of fp32 operands: whole parameters for
/// `MixedPrecisionOptimizer`, this rank's shard pieces for `DistributedOptimizer`.
///
/// One global-norm kernel over the gradients counted in the norm (read on the host, summed over
/// `gradStats`' groups, so every rank clips by the same norm and skips together), then one AdamW kernel
/// per parameter group that unscales and clips through its gradient scale and writes bf16 copies.
struct FusedAdamW {
    /// One parameter group's operands, index-aligned; a nil copy means an fp32 parameter (its own master).
    struct Operands {
        var masters: [Tensor] = []
        var grads: [Tensor] = []
        var expAvg: [Tensor] = []
        var expAvgSq: [Tensor] = []
        var copies: [Tensor?] = []
    }

    /// `rule` as the AdamW the kernels run, when it is AdamW and every parameter type has a kernel (fp32, bf16).
    static func rule(_ rule: UpdateRule, parameterTypes: [DType]) -> AdamRule? {
        guard let adam = rule as? AdamRule, adam.decoupledWeightDecay,
              parameterTypes.allSatisfy({ $0 == .float32 || $0 == .bfloat16 }) else { return nil }
        return adam
    }

    let rule: AdamRule
    /// Per parameter group (the scheduler's group index).
    let groups: [Operands]
    /// Every gradient, and those that count in the norm (a non-finite value anywhere skips the step).
    let all: [Tensor]
    let counted: [Tensor]

    /// Runs the step as update number `step` (the caller counts it when the report says `updated`).
    func run(step: Int, scheduler: OptimizerParamScheduler, clipGrad: Float, lossScale: Float,
             gradStats: GradientStatsGroups) throws -> MixedPrecisionOptimizer.StepReport {
        try withoutGrad {
            let local = counted.isEmpty ? [0, 0] : MultiTensorOps.globalNorm(counted).floats()
            let elsewhere = all.count == counted.count ? false : MultiTensorOps.globalNorm(all).floats()[1] != 0
            // The scalars cross ranks on the gradients' device (NCCL takes device tensors only).
            let device = all.first?.device ?? .cpu
            let total = try gradStats.reduce(squares: Double(local[0]) * Double(local[0]),
                                             nonFinite: local[1] != 0 || elsewhere || !local[0].isFinite, device: device)
            if total.nonFinite { return MixedPrecisionOptimizer.StepReport(gradNorm: .infinity, updated: false) }
            let norm = Float(total.squares.squareRoot()) / lossScale
            guard norm.isFinite else { return MixedPrecisionOptimizer.StepReport(gradNorm: .infinity, updated: false) }
            let coefficient = clipGrad > 0 ? min(1, GradientNorm.clipCoefficient(maxNorm: Double(clipGrad), totalNorm: Double(norm))) : 1
            for (g, operands) in groups.enumerated() {
                let adamStep = AdamWStep(learningRate: Float(scheduler.learningRate(group: g)), beta1: Float(rule.beta1),
                                         beta2: Float(rule.beta2), epsilon: Float(rule.eps),
                                         weightDecay: Float(scheduler.weightDecay(group: g)), step: step,
                                         gradientScale: Float(coefficient) / lossScale)
                MultiTensorOps.adamW(params: operands.masters, grads: operands.grads, expAvg: operands.expAvg,
                                     expAvgSq: operands.expAvgSq, copies: operands.copies, step: adamStep)
            }
            return MixedPrecisionOptimizer.StepReport(gradNorm: norm, updated: true)
        }
    }
}
