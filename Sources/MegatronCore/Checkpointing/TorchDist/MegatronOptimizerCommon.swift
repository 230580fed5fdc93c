import Foundation
import MegatronTensor

/// The non-sharded optimizer state of a torch_dist checkpoint as Megatron-LM's distributed optimizer writes it in
/// its `fully_reshardable` layout (the tensors, `optimizer.state.<param|exp_avg|exp_avg_sq>.<key>`, are written by
/// every rank's chunks): the param groups with their step, the scheduler, and the content metadata that makes
/// Megatron's loader read that layout, at any data-, tensor- or pipeline-parallel size; Megatron-LM without the
/// distributed optimizer resumes from the same entries and tensors (`make_megatron_checkpoints.py continue` resumes
/// from one of ours both ways).
public enum MegatronOptimizerCommon {
    /// Adam's hyperparameters as torch's AdamW records them in each param group.
    public struct Adam {
        public var beta1: Double, beta2: Double, eps: Double
        public init(beta1: Double, beta2: Double, eps: Double) { (self.beta1, self.beta2, self.eps) = (beta1, beta2, eps) }
    }

    /// The common-state entries (`optimizer`, `opt_param_scheduler`, `content_metadata`) and the `args` fields that
    /// say optimizer state was saved, for `scheduler`'s groups after `steps` updates.
    public static func entries(scheduler: OptimizerParamScheduler, adam: Adam, steps: Int)
        -> (common: [(String, PickleValue)], args: [(String, PickleValue)]) {
        let config = scheduler.configuration
        var groups: [[(String, PickleValue)]] = []
        var seen = Set<ParamGroupOverride>()
        for (g, override) in scheduler.groups.enumerated() where seen.insert(override).inserted {
            var fields: [(String, PickleValue)] = [
                ("is_expert_parallel", .bool(false)), ("default_config", .bool(override.usesDefaultLRSchedule)),
                ("wd_mult", .float(override.wdMult ?? 1)), ("lr_mult", .float(override.lrMult ?? 1)), ("is_decoupled_lr", .bool(false)),
                ("max_lr", rate(override.maxLR ?? config.maxLR)), ("min_lr", rate(override.minLR ?? config.minLR)),
            ]
            if let start = override.startWD { fields.append(("start_wd", rate(start))) }
            if let end = override.endWD { fields.append(("end_wd", rate(end))) }
            fields += [
                ("lr", .float(scheduler.learningRate(group: g))), ("betas", .tuple([rate(adam.beta1), rate(adam.beta2)])),
                ("eps", rate(adam.eps)), ("weight_decay", .float(scheduler.weightDecay(group: g))),
                ("amsgrad", .bool(false)), ("maximize", .bool(false)), ("foreach", .none), ("capturable", .bool(false)),
                ("differentiable", .bool(false)), ("fused", .none), ("decoupled_weight_decay", .bool(true)),
                // Transformer Engine's fused Adam, what Megatron runs on GPUs, reads these.
                ("bias_correction", .bool(true)),
            ]
            groups.append(fields)
        }
        // The distributed optimizer's entries (its groups carry the step), then the plain optimizer's (`param_groups`
        // and the step shared by every parameter), which Megatron-LM without the distributed optimizer reads.
        let optimizer = PickleValue.stringDict([
            ("optimizer", .stringDict([("param_groups", .list(groups.map { .stringDict($0 + [("step", .int(steps))]) }))])),
            ("param_state_sharding_type", .string("fully_reshardable")),
            ("state", .stringDict([("common_step", .tensor(Tensor(shape: [], values: [Float(steps)])))])),
            ("param_groups", .list(groups.map { .stringDict($0) })),
        ])
        let metadata = PickleValue.stringDict([
            ("singleton_local_shards", .bool(false)), ("chained_optim_avoid_prefix", .bool(true)),
            ("distrib_optim_sharding_type", .string("fully_reshardable")), ("distrib_optim_fully_reshardable_mem_efficient", .bool(false)),
        ])
        let args: [(String, PickleValue)] = [
            ("no_save_optim", .bool(false)), ("dist_ckpt_optim_fully_reshardable", .bool(true)),
        ]
        return ([("optimizer", optimizer), ("opt_param_scheduler", schedulerState(scheduler.state())), ("content_metadata", metadata)], args)
    }

    /// Megatron's `opt_param_scheduler` state dict.
    static func schedulerState(_ s: OptimizerParamScheduler.State) -> PickleValue {
        var fields: [(String, PickleValue)] = [
            ("max_lr", rate(s.maxLR)), ("lr_warmup_steps", whole(s.lrWarmupSteps)), ("num_steps", .int(s.numSteps)),
            ("lr_decay_style", .string(s.lrDecayStyle.rawValue)), ("lr_decay_steps", .int(s.lrDecaySteps)), ("min_lr", rate(s.minLR)),
        ]
        if let wd = s.weightDecay {
            fields += [("start_wd", rate(wd.startWD)), ("end_wd", rate(wd.endWD)), ("wd_incr_style", .string(wd.wdIncrStyle.rawValue)),
                       ("wd_incr_steps", .int(wd.wdIncrSteps))]
        }
        return .stringDict(fields)
    }

    /// A rate this build holds in single precision, written as the double the flag spelled (`--lr 1e-3` as 0.001,
    /// not 0.0010000000474974513), which Megatron's scheduler compares for equality with its own.
    static func rate(_ value: Double) -> PickleValue { .float(Double("\(Float(value))") ?? value) }

    static func whole(_ value: Double) -> PickleValue { value.rounded() == value ? .int(Int(value)) : .float(value) }
}
