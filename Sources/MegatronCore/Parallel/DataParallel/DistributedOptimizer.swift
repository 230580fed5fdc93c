import MegatronAutograd
import MegatronCUDA
import MegatronParallel
import MegatronTensor

/// Megatron's distributed optimizer (ZeRO-1): each data-parallel rank keeps fp32 master weights and the
/// update rule's state only for its shard of every bucket, and updates only those.
///
/// A step: the reduce-scattered shard gradients (`DistributedDataParallel.finishGradSync`) are unscaled and
/// checked for inf/NaN (any rank non-finite: every rank skips), the global norm is summed over the
/// data-parallel group and the model-parallel groups of `modelParallelStats`, the shard is clipped and
/// updated, written into the parameter buffer, and every bucket is all-gathered back into the parameters.
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
        stats.groups.insert(ddp.dataParallelGroup, at: 0)
        gradStats = stats
        var groupOf: [String: Int] = [:]
        for (g, group) in groups.enumerated() { for (name, _) in group.parameters { groupOf[name] = g } }
        let dp = ddp.dataParallelGroup.size, rank = ddp.dataParallelGroup.rank
        shards = try ddp.buffers.enumerated().map { b, buffer in
            try buffer.layout.buckets.indices.map { k in
                let pieces = try buffer.layout.shardPieces(bucket: k, rank: rank, dataParallelSize: dp).map { piece in
                    let name = buffer.parameters[piece.parameterIndex].name
                    guard let g = groupOf[name] else {
                        throw DataParallelError.invalidConfig("parameter '\(name)' is in no optimizer parameter group")
                    }
                    return Piece(parameter: piece.parameterIndex, name: name, group: g, shardRange: piece.shardRange,
                                 parameterRange: piece.parameterRange)
                }
                let owned = buffer.shardParams(k, rank: rank, dataParallelSize: dp)
                let master = buffer.paramDType == .float32 ? owned : owned.cast(to: .float32).contiguous()
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
        if let fused {
            // AdamW over fp32 / bf16 parameters on a GPU: the multi-tensor kernels over the shard pieces.
            let report = try fused.run(step: stepCount + 1, scheduler: scheduler, clipGrad: clipGrad, lossScale: lossScale,
                                       gradStats: gradStats)
            guard report.updated else { return report }
            stepCount += 1
            try gatherParameters()
            return report
        }
        let grads = shards.map { $0.map(\.mainGrad) }
        let onHost = !useTensorOps && ddp.buffers.allSatisfy { $0.device == .cpu }
        let local = onHost ? hostStatistics(grads, lossScale: lossScale) : tensorStatistics(grads, lossScale: lossScale)
        let device = ddp.buffers.first?.device ?? .cpu
        let total = try gradStats.reduce(squares: local.squares, nonFinite: local.nonFinite, device: device)
        if total.nonFinite { return MixedPrecisionOptimizer.StepReport(gradNorm: .infinity, updated: false) }
        let norm = total.squares.squareRoot()
        let coefficient = GradientNorm.clipCoefficient(maxNorm: Double(clipGrad), totalNorm: norm)
        if clipGrad > 0 && coefficient < 1 {
            for grad in grads.joined() { ParamAndGradBuffer.scale(grad, by: Float(coefficient)) }
        }
        stepCount += 1
        for (b, list) in shards.enumerated() {
            for (k, shard) in list.enumerated() {
                if onHost { hostUpdate(shard, grad: grads[b][k], scheduler: scheduler) }
                else { tensorUpdate(shard, grad: grads[b][k], scheduler: scheduler) }
            }
        }
        writeMastersIntoParameterBuffer()
        try gatherParameters()
        return MixedPrecisionOptimizer.StepReport(gradNorm: Float(norm), updated: true)
    }

    /// Runs the step with tensor ops (the path for GPU parameters without the fused kernels) even on the
    /// CPU, so tests can check it.
    var useTensorOps = false

    /// The multi-tensor step's operands, one entry per parameter piece of this rank's shards (views that stay
    /// valid for the optimizer's life), built at the first step: the bf16 copies land in this rank's shard of
    /// the parameter buffer, which the all-gather sends, so no separate copy of the masters is needed.
    private lazy var fused: FusedAdamW? = {
        guard ddp.buffers.allSatisfy({ $0.device != .cpu }),
              let adam = FusedAdamW.rule(rule, parameterTypes: ddp.buffers.map(\.paramDType)) else { return nil }
        var operands = Array(repeating: FusedAdamW.Operands(), count: groups.count)
        var all: [Tensor] = [], counted: [Tensor] = []
        for (b, buffer) in ddp.buffers.enumerated() {
            for shard in shards[b] {
                let shardGrad = shard.mainGrad
                all.append(shardGrad)
                for piece in shard.pieces {
                    let r = piece.shardRange, grad = ParamAndGradBuffer.view(shardGrad, r)
                    if gradStats.countsInNorm(piece.name) { counted.append(grad) }
                    operands[piece.group].masters.append(ParamAndGradBuffer.view(shard.master, r))
                    operands[piece.group].grads.append(grad)
                    operands[piece.group].expAvg.append(ParamAndGradBuffer.view(shard.states[0], r))
                    operands[piece.group].expAvgSq.append(ParamAndGradBuffer.view(shard.states[1], r))
                    operands[piece.group].copies.append(buffer.paramDType == .float32 ? nil : ParamAndGradBuffer.view(shard.params, r))
                }
            }
        }
        return FusedAdamW(rule: adam, groups: operands, all: all, counted: counted)
    }()

    /// Copies the reduced gradient shards into their fp32 main grads where the grad buffers are not fp32.
    private func copyReducedGradsToMainGrads() {
        for (b, list) in shards.enumerated() {
            for (k, shard) in list.enumerated() where shard.mainGrad.dtype != ddp.shardGrad(buffer: b, bucket: k).dtype {
                withoutGrad { Ops.copy(ddp.shardGrad(buffer: b, bucket: k), into: shard.mainGrad) }
            }
        }
    }

    /// Unscales the shard grads; returns whether any was inf/NaN and this rank's share of the squared norm.
    private func hostStatistics(_ grads: [[Tensor]], lossScale: Float) -> (nonFinite: Bool, squares: Double) {
        let all = grads.joined().map(floats)
        let nonFinite = lossScale != 1
            ? NonFiniteGradients.unscaleAndCheck(all, inverseScale: 1 / lossScale)
            : NonFiniteGradients.containsNonFinite(all.map { UnsafeBufferPointer($0) })
        var squares = 0.0
        for (b, list) in shards.enumerated() {
            for (k, shard) in list.enumerated() {
                let grad = floats(grads[b][k])
                for piece in shard.pieces where gradStats.countsInNorm(piece.name) {
                    squares += GradientNorm.sumOfSquares(UnsafeBufferPointer(rebasing: grad[piece.shardRange]))
                }
            }
        }
        return (nonFinite, squares)
    }

    /// `hostStatistics` with tensor ops: one host read for both numbers. A non-finite gradient shows as a
    /// non-finite sum of squares over the whole shard.
    private func tensorStatistics(_ grads: [[Tensor]], lossScale: Float) -> (nonFinite: Bool, squares: Double) {
        withoutGrad {
            if lossScale != 1 { for grad in grads.joined() { ParamAndGradBuffer.scale(grad, by: 1 / lossScale) } }
            func squares(_ t: Tensor) -> Tensor { Ops.reduce(Ops.binary(t, t, .mul), dims: [], .sum).reshaped([1]) }
            var all: [Tensor] = [], counted: [Tensor] = []
            for (b, list) in shards.enumerated() {
                for (k, shard) in list.enumerated() {
                    all.append(squares(grads[b][k]))
                    for piece in shard.pieces where gradStats.countsInNorm(piece.name) {
                        counted.append(squares(ParamAndGradBuffer.view(grads[b][k], piece.shardRange)))
                    }
                }
            }
            func total(_ parts: [Tensor]) -> Tensor {
                parts.isEmpty ? Tensor.zeros([1]) : Ops.reduce(Ops.concat(parts, dim: 0), dims: [], .sum).reshaped([1]).to(.cpu)
            }
            let both = Ops.concat([total(all), total(counted)], dim: 0).floats()
            return (!both[0].isFinite, Double(both[1]))
        }
    }

    private func hostUpdate(_ shard: OwnedShard, grad: Tensor, scheduler: OptimizerParamScheduler) {
        let master = floats(shard.master), g = floats(grad)
        let states = shard.states.map(floats)
        for piece in shard.pieces {
            let r = piece.shardRange
            rule.update(param: UnsafeMutableBufferPointer(rebasing: master[r]),
                        grad: UnsafeBufferPointer(rebasing: g[r]),
                        state: states.map { UnsafeMutableBufferPointer(rebasing: $0[r]) }, step: stepCount,
                        lr: Float(scheduler.learningRate(group: piece.group)),
                        weightDecay: Float(scheduler.weightDecay(group: piece.group)))
        }
    }

    private func tensorUpdate(_ shard: OwnedShard, grad: Tensor, scheduler: OptimizerParamScheduler) {
        guard let deviceRule = rule as? DeviceUpdateRule else {
            preconditionFailure("\(type(of: rule)) has no tensor-op update; GPU parameters need a DeviceUpdateRule")
        }
        withoutGrad {
            for piece in shard.pieces {
                let r = piece.shardRange
                deviceRule.update(param: ParamAndGradBuffer.view(shard.master, r), grad: ParamAndGradBuffer.view(grad, r),
                                  state: shard.states.map { ParamAndGradBuffer.view($0, r) }, step: stepCount,
                                  lr: Float(scheduler.learningRate(group: piece.group)),
                                  weightDecay: Float(scheduler.weightDecay(group: piece.group)))
            }
        }
    }

    /// Writes the updated fp32 masters of non-fp32 parameters into the parameter buffer's shards.
    private func writeMastersIntoParameterBuffer() {
        for (b, buffer) in ddp.buffers.enumerated() where buffer.paramDType != .float32 {
            for shard in shards[b] { withoutGrad { Ops.copy(shard.master, into: shard.params) } }
        }
    }

    /// All-gathers every bucket of the parameter buffer (waiting for it unless `overlapParamGather`).
    private func gatherParameters() throws {
        try ddp.startParamGather()
        if !ddp.config.overlapParamGather { try ddp.finishParamGather() }
    }

    private func floats(_ t: Tensor) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: t.pointer(as: Float.self), count: t.count)
    }

    // MARK: - Full (unsharded) state

    /// The whole optimizer state, gathered from every data-parallel rank, named as
    /// `MixedPrecisionOptimizer.stateTensors` names it: `master.<param>` (non-fp32 parameters only: an fp32
    /// parameter is its own master) and `state<k>.<param>`, each shaped like its parameter. Every rank of the
    /// data-parallel group must call it; every rank gets the full state.
    public func fullStateDict() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        let dp = ddp.dataParallelGroup.size
        for (b, buffer) in ddp.buffers.enumerated() {
            for (k, bucket) in buffer.layout.buckets.enumerated() {
                let shard = shards[b][k]
                var roles = shard.states.enumerated().map { ("state\($0.offset).", $0.element) }
                if buffer.paramDType != .float32 { roles.append(("master.", shard.master)) }
                for (prefix, local) in roles {
                    let full = Tensor.zeros([local.count * dp], device: buffer.device)
                    try ddp.dataParallelGroup.allGather(local, into: full).wait()
                    for i in bucket.parameterIndices {
                        let (name, p) = buffer.parameters[i]
                        let range = buffer.layout.parameterRanges[i]
                        let start = range.lowerBound - bucket.range.lowerBound
                        out[prefix + name] = ParamAndGradBuffer.view(full, start..<(start + range.count))
                            .reshaped(p.shape).contiguous()
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
        for (b, buffer) in ddp.buffers.enumerated() {
            buffer.copyParametersIntoParamBuffer()
            for shard in shards[b] {
                var roles = shard.states.enumerated().map { ("state\($0.offset).", $0.element) }
                if buffer.paramDType != .float32 { roles.append(("master.", shard.master)) }
                for (prefix, target) in roles {
                    for piece in shard.pieces {
                        let key = prefix + piece.name
                        guard let saved = tensors[key] else { throw StateDictError.missingKey(key) }
                        let shape = buffer.parameters[piece.parameter].tensor.shape
                        guard saved.shape == shape else {
                            throw StateDictError.shapeMismatch(key: key, expected: shape, found: saved.shape)
                        }
                        let source = ParamAndGradBuffer.view(saved.contiguous().reshaped([-1]), piece.parameterRange)
                        withoutGrad { Ops.copy(source, into: ParamAndGradBuffer.view(target, piece.shardRange)) }
                    }
                }
            }
        }
        self.stepCount = stepCount
    }
}
