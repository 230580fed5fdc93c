import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Megatron's `DistributedDataParallel`: the model's parameters bucketed into contiguous main-grad buffers
/// (one per parameter dtype; fp32 unless `gradReduceInFP32` is off), and the gradient reduction over the
/// data-parallel group.
///
/// Gradients are averaged over the group: pre-scaled by `1/dp` and summed (one `scaledSum` collective, which
/// scales as it reads), or averaged in the collective with `averageInCollective`. Without the distributed
/// optimizer each bucket is all-reduced; with it each bucket is reduce-scattered and rank r keeps the r-th shard (`shardGrad`). Megatron
/// reduce-scatters in place into the grad buffer; here the shard lands in its own `[bucket / dp]` tensor, as
/// not every backend allows an output that aliases the input (this costs 4 / dp bytes per parameter).
///
/// With expert parallelism the experts' parameters get buffers of their own, reduced over the expert
/// data-parallel group (Megatron's `expert_parallel_buffers`): pre-scaled by `1/dp` of the dense group all the
/// same and summed over the expert group, as Megatron does.
///
/// A parameter's hook fires once per backward pass that produced its gradient; a parameter whose gradient
/// arrives in two passes of one iteration (e.g. used both inside and outside a recomputed segment whose
/// replay runs its own pass) is reported by `finishGradSync` rather than reduced twice.
///
/// With `overlapGradReduce`, a bucket's collective starts from the gradient-ready hooks as soon as its last
/// gradient is accumulated during backward. Gradient accumulation runs every micro-batch but the last inside
/// `noSync`, so only the last backward starts collectives. Without overlap every bucket is reduced in
/// `finishGradSync`.
///
/// ```swift
/// let ddp = try DistributedDataParallel(parameters: model.namedParameters(),
///                                       config: DistributedDataParallelConfig(overlapGradReduce: true),
///                                       dataParallelGroup: dp)
/// try ddp.zeroGradBuffer()
/// for (m, batch) in microBatches.enumerated() {
///     if m < microBatches.count - 1 { ddp.noSync { loss(batch).backward() } } else { loss(batch).backward() }
/// }
/// try ddp.finishGradSync()        // every rank now holds the averaged gradients
/// ```
public final class DistributedDataParallel {
    public let config: DistributedDataParallelConfig
    public let dataParallelGroup: Communicator
    /// One buffer per parameter dtype, in order of first appearance; then, with an expert data-parallel
    /// group, one per dtype of the expert parameters.
    public let buffers: [ParamAndGradBuffer]
    /// The group each buffer is reduced and gathered over: `dataParallelGroup`, or the expert data-parallel group.
    public let bufferGroups: [Communicator]
    private var buckets: [[BucketSync]]
    private var syncEnabled = true
    private var gradSyncFinished = false
    private var hookError: Error?
    /// Parameter all-gathers in flight (distributed optimizer), by bucket.
    private var paramGathers: [BucketID: CollectiveWork] = [:]
    /// The buckets whose all-gather a forward stage waits for (`waitForParamGathersInForward`); nil: none.
    private var bucketsWaitedInForward: Set<BucketID>?
    /// The pre-forward hooks registered on the forward stages, to remove them again.
    private var forwardHooks: [(stage: Module, handle: ForwardHookHandle)] = []

    private struct BucketID: Hashable {
        let buffer: Int
        let bucket: Int
    }

    /// What one bucket's reduction has seen this iteration.
    private final class BucketSync {
        var waiting: Set<Int>
        var work: CollectiveWork?
        /// The reduce-scatter output (distributed optimizer): this rank's shard of the reduced bucket.
        let shardGrad: Tensor?

        init(parameterIndices: [Int], shardSize: Int?, dtype: DType, device: Device) {
            waiting = Set(parameterIndices)
            shardGrad = shardSize.map { Tensor.zeros([$0], dtype: dtype, device: device) }
        }
    }

    /// - Parameters:
    ///   - parameters: the model's trainable parameters (leaves) in definition order, as `namedParameters()` gives them.
    ///   - sharedEmbeddings: names of parameters shared with another pipeline stage; with the distributed
    ///     optimizer each gets a bucket of its own, as Megatron.
    ///   - disableBucketing: one bucket whatever the bucket size; Megatron does this on pipeline stages after
    ///     the first, whose reduction is off the critical path.
    ///   - expertParameters: names of the expert parameters reduced over `expertDataParallelGroup` (when given).
    public init(parameters: [(String, Tensor)], config: DistributedDataParallelConfig, dataParallelGroup: Communicator,
                sharedEmbeddings: Set<String> = [], disableBucketing: Bool = false,
                expertParameters: Set<String> = [], expertDataParallelGroup: Communicator? = nil) throws {
        try config.validate()
        self.config = config
        self.dataParallelGroup = dataParallelGroup
        for (name, p) in parameters where !(p.isLeaf && p.requiresGrad) {
            throw DataParallelError.invalidConfig("parameter '\(name)' is not a leaf that requires grad")
        }
        // (parameters, group) per buffer: the dense ones by dtype, then the experts' by dtype.
        var sets: [(parameters: [(String, Tensor)], group: Communicator)] = []
        let isExpert = { (name: String) in expertDataParallelGroup != nil && expertParameters.contains(name) }
        for (expert, group) in [(false, dataParallelGroup), (true, expertDataParallelGroup ?? dataParallelGroup)] {
            let members = parameters.filter { isExpert($0.0) == expert }
            var dtypes: [DType] = []
            for (_, p) in members where !dtypes.contains(p.dtype) { dtypes.append(p.dtype) }
            sets += dtypes.map { dtype in (members.filter { $0.1.dtype == dtype }, group) }
        }
        bufferGroups = sets.map(\.group)
        buffers = sets.map { set in
            let members = set.parameters.map { (name: $0.0, tensor: $0.1) }, dtype = members[0].tensor.dtype
            let dp = set.group.size
            let layout = BufferLayout(
                elementCounts: members.map(\.tensor.count),
                bucketSize: disableBucketing ? nil : config.effectiveBucketSize(dataParallelSize: dp),
                dataParallelSize: dp, padForDistributedOptimizer: config.useDistributedOptimizer,
                padForHighBusBandwidth: config.padBucketsForHighNCCLBusBandwidth,
                needsOwnBucket: members.map { sharedEmbeddings.contains($0.name) })
            return ParamAndGradBuffer(parameters: members, layout: layout, withParamData: config.useDistributedOptimizer,
                                      gradDType: config.gradDType(forParameters: dtype))
        }
        buckets = zip(buffers, bufferGroups).map { buffer, group in
            buffer.layout.buckets.map { bucket in
                BucketSync(parameterIndices: bucket.parameterIndices,
                           shardSize: config.useDistributedOptimizer ? bucket.range.count / group.size : nil,
                           dtype: buffer.gradDType, device: buffer.device)
            }
        }
        for (b, buffer) in buffers.enumerated() {
            buffer.attachGrads()
            for (i, (_, p)) in buffer.parameters.enumerated() {
                p.onGradReady { [weak self] _ in self?.gradReady(buffer: b, parameter: i) }
            }
        }
    }

    /// Zeroes the grad buffers and starts a new iteration's bookkeeping. Then waits for the parameter
    /// all-gathers still in flight, so the coming forward sees the updated parameters: all of them, or with
    /// `waitForParamGathersInForward` those that no forward stage waits for.
    public func zeroGradBuffer() throws {
        // Enqueued before the wait, so the zeroing runs while the all-gathers are in flight.
        for buffer in buffers { buffer.zeroGrads() }
        if let bucketsWaitedInForward {
            try finishParamGather(paramGathers.keys.filter { !bucketsWaitedInForward.contains($0) })
        } else {
            try finishParamGather()
        }
        resetBucketState()
    }

    /// With `overlapParamGather`, makes each of `stages` wait, as its forward begins, for the all-gathers of the
    /// buckets that hold its parameters, instead of `zeroGradBuffer` waiting for all of them: the parameters of
    /// later layers then arrive while earlier layers run (Megatron's forward pre-hooks). The waits are forward
    /// pre-hooks registered on the stages (`Module.registerForwardPreHook`), e.g. on `GPTModel.forwardStages`;
    /// a second call replaces the first's. Buckets holding no stage's parameters are still waited for in
    /// `zeroGradBuffer`. A failed wait is thrown by the next `finishGradSync`.
    public func waitForParamGathersInForward(of stages: [Module]) {
        guard config.overlapParamGather else { return }
        removeForwardHooks()
        // Parameters are found by storage, so a stage holding a view of a parameter waits for it too.
        var bucketsOf: [ObjectIdentifier: Set<BucketID>] = [:]
        for (b, buffer) in buffers.enumerated() {
            for (i, (_, p)) in buffer.parameters.enumerated() {
                bucketsOf[ObjectIdentifier(p.storage), default: []].insert(BucketID(buffer: b, bucket: buffer.layout.parameterBuckets[i]))
            }
        }
        var waited = Set<BucketID>()
        for stage in stages {
            let ids = stage.namedParameters().reduce(into: Set<BucketID>()) { $0.formUnion(bucketsOf[ObjectIdentifier($1.1.storage)] ?? []) }
            waited.formUnion(ids)
            let handle = stage.registerForwardPreHook { [weak self] _ in
                guard let self else { return }
                do { try finishParamGather(ids) } catch { hookError = hookError ?? error }
            }
            forwardHooks.append((stage, handle))
        }
        bucketsWaitedInForward = waited
    }

    deinit { removeForwardHooks() }

    /// Removes the pre-forward hooks `waitForParamGathersInForward` registered.
    private func removeForwardHooks() {
        for (stage, handle) in forwardHooks { stage.removeHook(handle) }
        forwardHooks = []
    }

    /// Runs `body` (the forward and backward of a micro-batch that is not the last) without starting any
    /// gradient collective; the gradients just accumulate (Megatron's `no_sync`).
    public func noSync<R>(_ body: () throws -> R) rethrows -> R {
        syncEnabled = false
        defer { syncEnabled = true }
        return try body()
    }

    /// Starts every bucket's collective not yet started (all of them without `overlapGradReduce`).
    public func startGradSync() throws {
        for b in buckets.indices {
            for k in buckets[b].indices where buckets[b][k].work == nil { try launchReduction(buffer: b, bucket: k) }
        }
    }

    /// Waits until every bucket's gradients are reduced over the data-parallel group. With overlap, every
    /// bucket must have been started by the hooks of the last backward; otherwise this starts them all first.
    public func finishGradSync() throws {
        if gradSyncFinished { return }
        if let hookError {
            self.hookError = nil
            throw hookError
        }
        if config.overlapGradReduce {
            for (b, list) in buckets.enumerated() {
                for (k, sync) in list.enumerated() where sync.work == nil { throw notStarted(buffer: b, bucket: k) }
            }
        } else {
            try startGradSync()
        }
        for list in buckets { for sync in list { try sync.work?.wait() } }
        gradSyncFinished = true
    }

    /// Parameter `name`'s reduced gradient after `finishGradSync`: its view of the grad buffer, or with the
    /// distributed optimizer this rank's shard of its bucket, which must hold it alone (`sharedEmbeddings`).
    public func reducedGradient(ofParameter name: String) throws -> Tensor {
        for (b, buffer) in buffers.enumerated() {
            guard let i = buffer.parameters.firstIndex(where: { $0.name == name }) else { continue }
            guard config.useDistributedOptimizer else {
                guard let grad = buffer.parameters[i].tensor.grad else { throw DataParallelError.invalidConfig("'\(name)' has no gradient") }
                return grad
            }
            let k = buffer.layout.parameterBuckets[i]
            guard buffer.layout.buckets[k].parameterIndices == [i] else {
                throw DataParallelError.invalidConfig("'\(name)' shares its gradient bucket: pass it in sharedEmbeddings to reduce it on its own")
            }
            return shardGrad(buffer: b, bucket: k)
        }
        throw DataParallelError.invalidConfig("no parameter '\(name)' in the gradient buffers")
    }

    /// How many buckets' collectives have started this iteration (with overlap: during backward).
    public var startedReductions: Int { buckets.joined().filter { $0.work != nil }.count }

    /// How many buckets' parameter all-gathers have not been waited for yet.
    public var pendingParamGathers: Int { paramGathers.count }

    /// Number of buckets over all buffers.
    public var bucketCount: Int { buckets.joined().count }

    /// This rank's shard of bucket `bucket` of buffer `buffer` after the reduce-scatter (distributed optimizer).
    public func shardGrad(buffer: Int, bucket: Int) -> Tensor {
        guard let shard = buckets[buffer][bucket].shardGrad else {
            preconditionFailure("shardGrad needs useDistributedOptimizer")
        }
        return shard
    }

    /// The mean of each value over the data-parallel group, for logging the loss as Megatron does
    /// (`average_losses_across_data_parallel_group`). Every rank must call it.
    public func averageAcrossDataParallelGroup(_ values: [Float]) throws -> [Float] {
        let device = buffers.first?.device ?? .cpu
        let t = Tensor(shape: [values.count], values: values).to(device)
        try dataParallelGroup.allReduce(t, op: .average).wait()
        return t.to(.cpu).floats()
    }

    /// Copies rank 0's parameters to every rank of the data-parallel group (Megatron's `broadcast_params`).
    public func broadcastParameters() throws {
        for (buffer, group) in zip(buffers, bufferGroups) {
            for (_, p) in buffer.parameters { try group.broadcast(p.detached(), root: 0).wait() }
            buffer.copyParametersIntoParamBuffer()
        }
    }

    /// Starts the all-gather of every bucket's parameters from each rank's shard of `paramData`
    /// (distributed optimizer, after the optimizer wrote its updated shard there), in place: a rank's shard
    /// is already its block of the gathered bucket.
    public func startParamGather() throws {
        for (b, buffer) in buffers.enumerated() where buffer.paramData != nil {
            let group = bufferGroups[b], dp = group.size, rank = group.rank
            // In forward order: buffers are laid out last layer first, so the first layers are in the last bucket.
            for k in buffer.layout.buckets.indices.reversed() {
                let shard = buffer.shardParams(k, rank: rank, dataParallelSize: dp)
                paramGathers[BucketID(buffer: b, bucket: k)] = try group.allGather(shard, into: buffer.bucketParams(k))
            }
        }
    }

    /// Waits for the parameter all-gathers in flight and copies the gathered values into the parameters that
    /// do not live in the parameter buffer (`ParamAndGradBuffer.parametersInParamData`).
    public func finishParamGather() throws { try finishParamGather(Array(paramGathers.keys)) }

    private func finishParamGather(_ ids: some Sequence<BucketID>) throws {
        for id in ids {
            guard let work = paramGathers.removeValue(forKey: id) else { continue }
            try work.wait()
            buffers[id.buffer].copyParamBufferIntoParameters(bucket: id.bucket)
        }
    }

    // MARK: - Reduction

    private func gradReady(buffer b: Int, parameter i: Int) {
        guard config.overlapGradReduce, syncEnabled, hookError == nil else { return }
        let k = buffers[b].layout.parameterBuckets[i]
        let sync = buckets[b][k]
        guard sync.waiting.remove(i) != nil else {
            hookError = DataParallelError.gradSync(
                "gradient of '\(buffers[b].parameters[i].name)' became ready twice before finishGradSync; run every micro-batch but the last inside noSync")
            return
        }
        if sync.waiting.isEmpty {
            do { try launchReduction(buffer: b, bucket: k) } catch { hookError = error }
        }
    }

    private func launchReduction(buffer b: Int, bucket k: Int) throws {
        let grads = buffers[b].bucketGrad(k)
        // Megatron's pre-scaling by 1/dp, done by the collective as it reads each rank's grads: no pass of its own.
        // Expert buffers are scaled by the dense group's 1/dp too, then summed over their own group.
        let group = bufferGroups[b]
        let op: MegatronParallel.ReduceOp = config.averageInCollective && group === dataParallelGroup
            ? .average : .scaledSum(1 / Float(dataParallelGroup.size))
        let sync = buckets[b][k]
        if let shard = sync.shardGrad {
            sync.work = try group.reduceScatter(grads, into: shard, op: op)
        } else {
            sync.work = try group.allReduce(grads, op: op)
        }
    }

    private func notStarted(buffer b: Int, bucket k: Int) -> DataParallelError {
        let sync = buckets[b][k]
        let missing = sync.waiting.sorted().map { "'\(buffers[b].parameters[$0].name)'" }
        let total = buffers[b].layout.buckets[k].parameterIndices.count
        return .gradSync("bucket \(k) was never reduced: \(missing.count) of its \(total) parameters got no gradient in the last backward (\(missing.prefix(4).joined(separator: ", "))); every parameter must take part in the loss")
    }

    private func resetBucketState() {
        for (b, list) in buckets.enumerated() {
            for (k, sync) in list.enumerated() {
                sync.waiting = Set(buffers[b].layout.buckets[k].parameterIndices)
                sync.work = nil
            }
        }
        gradSyncFinished = false
        hookError = nil
    }
}
