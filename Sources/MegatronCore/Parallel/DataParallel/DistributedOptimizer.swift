import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Megatron's distributed optimizer (ZeRO-1): each data-parallel rank keeps fp32 master weights and the
/// update rule's state only for its shard of every bucket, and updates only those.
///
/// A step: the reduce-scattered shard gradients (`DistributedDataParallel.finishGradSync`) are unscaled and
/// checked for inf/NaN (any rank non-finite: every rank skips), the global norm is summed over the
/// data-parallel group and the model-parallel groups of `modelParallelStats` (`GradientClipping`, as in
/// `MixedPrecisionOptimizer`), the shard is clipped and updated (`UpdateRule.step`), written into the
/// parameter buffer, and every bucket is all-gathered back into the parameters.
/// With `overlapParamGather` the step only starts the all-gathers; `DistributedDataParallel.zeroGradBuffer`
/// (or `finishParamGather`) waits for them before the next forward, or each forward stage for its own
/// (`DistributedDataParallel.waitForParamGathersInForward`).
///
/// Masters of fp32 parameters are the parameter buffer's shard itself, as in Megatron; bf16 / fp16
/// parameters get an fp32 copy of the shard.
///
/// ```swift
/// let ddp = try DistributedDataParallel(parameters: model.namedParameters(),
///                                       config: DistributedDataParallelConfig(useDistributedOptimizer: true),
///                                       dataParallelGroup: dp)
/// let optimizer = try DistributedOptimizer(ddp: ddp, groups: try ParamGroup.megatronDefault(model.namedParameters()),
///                                          rule: try AdamRule.adamW())
/// try ddp.zeroGradBuffer()
/// loss.backward()
/// let report = try optimizer.step(scheduler: scheduler, clipGrad: 1.0)
/// ```
public final class DistributedOptimizer {
    public let ddp: DistributedDataParallel
    public let groups: [ParamGroup]
    public let rule: UpdateRule
    /// Norm and inf/NaN reduction: the data-parallel group, then the model-parallel groups given.
    public let gradStats: GradientStatsGroups
    /// Updates taken so far (skipped steps excluded).
    public private(set) var stepCount = 0
    /// `[buffer][bucket]`: what this rank owns of each bucket.
    let shards: [[OwnedShard]]

    /// One parameter's slice of a rank's shard.
    struct Piece {
        let parameter: Int
        let name: String
        let group: Int
        let shardRange: Range<Int>
        let parameterRange: Range<Int>
    }

    /// A rank's shard of one bucket: its view of the parameter buffer, fp32 masters, fp32 main grads and
    /// state, each `[shardSize]`, and the pieces in it.
    struct OwnedShard {
        let pieces: [Piece]
        let params: Tensor
        let master: Tensor
        /// The reduced gradients the update reads: DDP's shard itself when it is fp32, else an fp32 copy of it
        /// made each step (Megatron's `_copy_model_grads_to_main_grads` with `--grad-reduce-in-bf16`).
        let mainGrad: Tensor
        let states: [Tensor]
    }

    /// - Parameters:
    ///   - groups: every parameter of `ddp`, each in one group (for its learning rate and weight decay).
    ///   - modelParallelStats: the model-parallel groups and tensor-parallel duplicates (see
    ///     `GradientStatsGroups`); the data-parallel group is added here.
    public init(ddp: DistributedDataParallel, groups: [ParamGroup], rule: UpdateRule,
                modelParallelStats: GradientStatsGroups = GradientStatsGroups()) throws {
        guard ddp.config.useDistributedOptimizer else {
            throw DataParallelError.invalidConfig("DistributedOptimizer needs a DistributedDataParallel built with useDistributedOptimizer")
        }
        self.ddp = ddp
        self.groups = groups
        self.rule = rule
        var stats = modelParallelStats
        if !stats.spansDataParallel { stats.groups.insert(ddp.dataParallelGroup, at: 0) }
        gradStats = stats
        var groupOf: [String: Int] = [:]
        for (g, group) in groups.enumerated() { for (name, _) in group.parameters { groupOf[name] = g } }
        shards = try ddp.buffers.enumerated().map { b, buffer in
            let dp = ddp.bufferGroups[b].size, rank = ddp.bufferGroups[b].rank
            return try buffer.layout.buckets.indices.map { k in
                let pieces = try buffer.layout.shardPieces(bucket: k, rank: rank, dataParallelSize: dp).map { piece in
                    let name = buffer.parameters[piece.parameterIndex].name
                    guard let g = groupOf[name] else {
                        throw DataParallelError.invalidConfig("parameter '\(name)' is in no optimizer parameter group")
                    }
                    return Piece(parameter: piece.parameterIndex, name: name, group: g, shardRange: piece.shardRange,
                                 parameterRange: piece.parameterRange)
                }
                let owned = buffer.shardParams(k, rank: rank, dataParallelSize: dp)
                let master = buffer.paramDType == .float32 ? owned : owned.cast(to: .float32).madeContiguous()
                let states = (0..<rule.stateCount).map { _ in Tensor.zeros([owned.count], device: buffer.device) }
                let reduced = ddp.shardGrad(buffer: b, bucket: k)
                let mainGrad = reduced.dtype == .float32 ? reduced : Tensor.zeros([reduced.count], device: buffer.device)
                return OwnedShard(pieces: pieces, params: owned, master: master, mainGrad: mainGrad, states: states)
            }
        }
    }

    /// Zeroes the gradient buffers for a new iteration (waiting for parameter all-gathers still in flight).
    public func zeroGrad() throws { try ddp.zeroGradBuffer() }

    /// Finishes the gradient reduction, then unscales by `1 / lossScale`, skips the update on any rank's
    /// inf/NaN, clips to `clipGrad` (0: no clipping) by the global norm, updates this rank's shard with each
    /// group's learning rate and weight decay from `scheduler`, and all-gathers the parameters.
    @discardableResult
    public func step(scheduler: OptimizerParamScheduler, clipGrad: Float = 0,
                     lossScale: Float = 1) throws -> MixedPrecisionOptimizer.StepReport {
        try ddp.finishGradSync()
        copyReducedGradsToMainGrads()
        let outcome = try GradientClipping(gradStats: gradStats).check(all: shardGrads.all, counted: shardGrads.counted,
                                                                        lossScale: lossScale, clipGrad: clipGrad)
        if outcome.skip { return MixedPrecisionOptimizer.StepReport(gradNorm: outcome.gradNorm, updated: false) }
        stepCount += 1
        let backend = updateBackend ?? UpdateBackend.choose(for: rule, on: ddp.buffers.first?.device ?? .cpu)
        rule.step(groupOperands, step: stepCount, scheduler: scheduler, gradientScale: outcome.gradientScale, backend: backend)
        try gatherParameters()
        return MixedPrecisionOptimizer.StepReport(gradNorm: outcome.gradNorm, updated: true)
    }

    /// Where the update runs; nil: chosen from the buffers' device. Tests set `.tensorOps` to run the device
    /// path on the CPU.
    var updateBackend: UpdateBackend?

    /// This rank's fp32 shard gradients (any inf/NaN in them skips the step) and the pieces of them that count
    /// in its share of the norm.
    private lazy var shardGrads: (all: [Tensor], counted: [Tensor]) = {
        var all: [Tensor] = [], counted: [Tensor] = []
        for shard in shards.joined() {
            all.append(shard.mainGrad)
            for piece in shard.pieces where gradStats.countsInNorm(piece.name) {
                counted.append(ParamAndGradBuffer.view(shard.mainGrad, piece.shardRange))
            }
        }
        return (all, counted)
    }()

    /// The update's operands per parameter group, one entry per parameter piece of this rank's shards (views
    /// that stay valid for the optimizer's life): masters, fp32 main grads and state, and for non-fp32
    /// parameters the piece of this rank's shard of the parameter buffer, which the all-gather sends.
    private lazy var groupOperands: [UpdateOperands] = {
        var operands = Array(repeating: UpdateOperands(), count: groups.count)
        for (b, buffer) in ddp.buffers.enumerated() {
            for shard in shards[b] {
                for piece in shard.pieces {
                    let r = piece.shardRange
                    operands[piece.group].append(master: ParamAndGradBuffer.view(shard.master, r),
                                                 grad: ParamAndGradBuffer.view(shard.mainGrad, r),
                                                 state: shard.states.map { ParamAndGradBuffer.view($0, r) },
                                                 copy: buffer.paramDType == .float32 ? nil : ParamAndGradBuffer.view(shard.params, r))
                }
            }
        }
        return operands
    }()

    /// Copies the reduced gradient shards into their fp32 main grads where the grad buffers are not fp32.
    private func copyReducedGradsToMainGrads() {
        for (b, list) in shards.enumerated() {
            for (k, shard) in list.enumerated() where shard.mainGrad.dtype != ddp.shardGrad(buffer: b, bucket: k).dtype {
                withoutGrad { Ops.copy(ddp.shardGrad(buffer: b, bucket: k), into: shard.mainGrad) }
            }
        }
    }

    /// All-gathers every bucket of the parameter buffer (waiting for it unless `overlapParamGather`).
    private func gatherParameters() throws {
        try ddp.startParamGather()
        if !ddp.config.overlapParamGather { try ddp.finishParamGather() }
    }

    // MARK: - Full (unsharded) state

    /// The whole optimizer state, gathered from every data-parallel rank, named as
    /// `MixedPrecisionOptimizer.stateTensors` names it: `master.<param>` (non-fp32 parameters only: an fp32
    /// parameter is its own master) and `state<k>.<param>`, each shaped like its parameter. Every rank of the
    /// data-parallel group must call it; every rank gets the full state.
    public func fullStateDict() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (b, buffer) in ddp.buffers.enumerated() {
            let group = ddp.bufferGroups[b], dp = group.size
            for (k, bucket) in buffer.layout.buckets.enumerated() {
                let shard = shards[b][k]
                var roles = shard.states.enumerated().map { ("state\($0.offset).", $0.element) }
                if buffer.paramDType != .float32 { roles.append(("master.", shard.master)) }
                for (prefix, local) in roles {
                    let full = Tensor.zeros([local.count * dp], device: buffer.device)
                    try group.allGather(local, into: full).wait()
                    for i in bucket.parameterIndices {
                        let (name, p) = buffer.parameters[i]
                        let range = buffer.layout.parameterRanges[i]
                        let start = range.lowerBound - bucket.range.lowerBound
                        out[prefix + name] = ParamAndGradBuffer.view(full, start..<(start + range.count))
                            .reshaped(p.shape).madeContiguous()
                    }
                }
            }
        }
        return out
    }

    /// Loads this rank's shard from a full state (from `fullStateDict` of a run with any data-parallel size,
    /// or `MixedPrecisionOptimizer.stateTensors`) and the number of steps taken. Load the model's parameters
    /// first: fp32 parameters are their own masters and are read from the model here.
    public func loadFullStateDict(_ tensors: [String: Tensor], stepCount: Int) throws {
        try loadOwnedState(stepCount: stepCount) { key, parameterRange, shape in
            guard let saved = tensors[key] else { throw StateDictError.missingKey(key) }
            guard saved.shape == shape else { throw StateDictError.shapeMismatch(key: key, expected: shape, found: saved.shape) }
            return ParamAndGradBuffer.view(saved.madeContiguous().reshaped([-1]), parameterRange)
        }
    }

    /// Loads this rank's shard piece by piece: `read(key, parameterRange, parameterShape)` gives the elements
    /// `parameterRange` of the flattened state `key` (`state<k>.<param>`, `master.<param>`), e.g. from a sharded
    /// checkpoint's boxes. Load the model's parameters first.
    public func loadOwnedState(stepCount: Int, read: (String, Range<Int>, [Int]) throws -> Tensor) throws {
        for (b, buffer) in ddp.buffers.enumerated() {
            buffer.copyParametersIntoParamBuffer()
            for shard in shards[b] {
                var roles = shard.states.enumerated().map { ("state\($0.offset).", $0.element) }
                if buffer.paramDType != .float32 { roles.append(("master.", shard.master)) }
                for (prefix, target) in roles {
                    for piece in shard.pieces {
                        let source = try read(prefix + piece.name, piece.parameterRange, buffer.parameters[piece.parameter].tensor.shape)
                        withoutGrad { Ops.copy(source, into: ParamAndGradBuffer.view(target, piece.shardRange)) }
                    }
                }
            }
        }
        self.stepCount = stepCount
    }
}
