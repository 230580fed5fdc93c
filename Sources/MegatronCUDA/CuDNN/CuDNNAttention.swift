import CCUDA
import Foundation

/// Flash attention through cuDNN's fused SDPA engines (forward with log-sum-exp, and backward),
/// taking the same operands as `CUDAKernels.attentionForward` / `attentionBackward`: bf16 or fp16,
/// head dims that are multiples of 8 up to 256 (which of them an engine takes depends on the GPU and
/// cuDNN: a refused shape throws `isNotSupported`), causal or not, GQA, and dropout. The plans of
/// up to `tunedCandidates` engine configs are cached per `SDPAShape` (sizes, strides, type, causal,
/// scale, dropout probability); the first call of a shape times them and keeps the fastest
/// (`CuDNNPlanChoice`; with one candidate the heuristic's first config always runs, the same engine
/// run to run). Workspaces come from the caching allocator for each call.
///
/// Dropout draws its mask from cuDNN's own generator, so its bits differ from our kernels' (and the
/// CPU reference's) Philox mask: the same keep probability, other elements. The backward must run
/// here too, with the forward's `problem.dropout` (seed and offset), to draw the same mask again.
///
///     let attention = try CuDNNAttention(device: device, allocator: allocator)
///     try attention.attentionForwardCuDNN(output: o, logSumExp: lse, q: q, k: k, v: v, problem: problem,
///                                         type: .bfloat16, stream: stream)
public final class CuDNNAttention {
    public let device: CUDADevice
    private let cudnn: CuDNNLibrary
    private let handle: cudnnHandle_t
    private let allocator: CachingAllocator
    private let lock = NSLock()
    /// Plans by direction and shape; a shape no engine takes is remembered as its error, so it is not retried.
    private var plans: [PlanKey: Result<CuDNNPlanChoice, CuDNNError>] = [:]

    /// Engine configs planned per shape and timed on its first call, in the heuristic's order (each
    /// costs a plan build, often an NVRTC compile, once per shape).
    public let tunedCandidates: Int
    public static let defaultTunedCandidates = 4

    /// Shapes planned at most: each new shape costs cuDNN a plan build (often an NVRTC compile, up to
    /// seconds), so a caller whose shapes keep changing (generation's growing key count) gets
    /// `isNotSupported` past this many and runs our kernels instead of compiling without end.
    public static let maxCachedPlans = 64

    private struct PlanKey: Hashable {
        var backward: Bool
        var shape: SDPAShape
    }

    /// Opens cuDNN (throws `CUDAError.libraryUnavailable` naming what to install) and creates a handle on `device`;
    /// `tunedCandidates` (default `defaultTunedCandidates`) engine configs are timed per shape.
    public init(device: CUDADevice, allocator: CachingAllocator, tunedCandidates: Int? = nil) throws {
        self.tunedCandidates = max(1, tunedCandidates ?? Self.defaultTunedCandidates)
        let cudnn = try CuDNNLibrary.load()
        try device.makeCurrent()
        var made: cudnnHandle_t?
        try cudnn.check(cudnn.table.cudnnCreate(&made), "cudnnCreate")
        (self.device, self.cudnn, self.handle, self.allocator) = (device, cudnn, made!, allocator)
    }

    deinit {
        plans.removeAll()
        _ = cudnn.table.cudnnDestroy(handle)
    }

    /// The loaded cuDNN's version (91900 for 9.19.0).
    public var version: Int { cudnn.version }

    /// Number of plans built (or found unsupported) so far.
    public var cachedPlanCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return plans.count
    }

    /// Why each shape that no cuDNN engine took was refused (those shapes run our kernels instead).
    public var planFailures: [String] {
        lock.lock()
        defer { lock.unlock() }
        return plans.compactMap { key, result in
            guard case .failure(let error) = result else { return nil }
            return "\(Self.describe(key)): \(error)"
        }
    }

    /// Each timed shape's candidates: "forward b16 h12/12 s1024 t1024 d64 causal true dropout 0.1: 0.412 0.388* ms"
    /// (per run, in the heuristic's order, the chosen one starred).
    public var planTimings: [String] {
        lock.lock()
        defer { lock.unlock() }
        return plans.compactMap { key, result in
            guard case .success(let choice) = result, let timings = choice.timings else { return nil }
            return "\(Self.describe(key)) dropout \(key.shape.dropout): \(timings)"
        }.sorted()
    }

    private static func describe(_ key: PlanKey) -> String {
        let s = key.shape
        return "\(key.backward ? "backward" : "forward") b\(s.batch) h\(s.heads)/\(s.kvHeads) s\(s.queries) t\(s.keys) "
            + "d\(s.headDim) \(s.dataType) causal \(s.causal)"
    }

    /// The problem as cuDNN's 4-D `[batch, head, row, dim]` tensors, or nil where cuDNN cannot take it:
    /// fp32, a head dim that is not a multiple of 8 up to 256, rows not 16-byte aligned, query heads
    /// whose group and in-group strides do not fold into one head stride (e.g. q interleaved with k and
    /// v per group), or dropout with fewer queries than keys (cuDNN's bottom-right diagonal takes no dropout).
    public static func shape(_ problem: AttentionProblem, type: KernelElementType, operands: [SDPARole: AttentionOperand]) -> SDPAShape? {
        guard type != .float32, CUDAKernels.supportsAttentionHeadDim(problem.headDim),
              problem.queries <= problem.keys, problem.dropout == nil || problem.queries == problem.keys else { return nil }
        var strides: [SDPARole: [Int]] = [:]
        for (role, operand) in operands {
            guard operand.address % 16 == 0, [operand.batchStride, operand.groupStride, operand.headStride, operand.rowStride]
                .allSatisfy({ $0 % 8 == 0 }) else { return nil }
            switch role {
            case .q, .o, .dO, .dQ:
                guard let head = foldedHeadStride(operand, problem) else { return nil }
                strides[role] = [operand.batchStride, head, operand.rowStride, 1]
            case .k, .v, .dK, .dV:
                strides[role] = [operand.batchStride, operand.groupStride, operand.rowStride, 1]
            case .stats, .softmaxSum, .dQAccumulator, .dropoutSeed, .dropoutOffset:
                return nil
            }
        }
        return SDPAShape(batch: problem.batch, heads: problem.heads, kvHeads: problem.groups, queries: problem.queries,
                         keys: problem.keys, headDim: problem.headDim, dataType: type == .bfloat16 ? .bfloat16 : .half,
                         causal: problem.causal, scale: problem.scale, dropout: problem.dropout?.probability ?? 0, strides: strides)
    }

    /// Head h = group · perGroup + j is at group · groupStride + j · headStride: one stride when
    /// there is one group, one head per group, or the groups follow each other's heads.
    static func foldedHeadStride(_ operand: AttentionOperand, _ problem: AttentionProblem) -> Int? {
        if problem.perGroup == 1 { return operand.groupStride }
        if problem.groups == 1 || operand.groupStride == problem.perGroup * operand.headStride { return operand.headStride }
        return nil
    }

    /// Forward: writes `output` (addressed like the queries) and `logSumExp`, fp32 `[batch, heads, queries]`
    /// contiguous, the natural-log row log-sum-exp of the scaled scores (what the backward reads, ours or cuDNN's).
    /// Throws `CuDNNError` (`isNotSupported`) when no cuDNN engine takes the problem.
    public func attentionForwardCuDNN(output: AttentionOperand, logSumExp: UInt64, q: AttentionOperand, k: AttentionOperand,
                                      v: AttentionOperand, problem: AttentionProblem, type: KernelElementType,
                                      stream: CUDAStream) throws {
        let shape = try Self.require(problem, type: type, [.q: q, .k: k, .v: v, .o: output])
        let plan = try self.plan(backward: false, shape)
        try run(plan, stream: stream, scratchBytes: 0, dropout: problem.dropout) { _ in
            [SDPARole.q.rawValue: q.address, SDPARole.k.rawValue: k.address, SDPARole.v.rawValue: v.address,
             SDPARole.o.rawValue: output.address, SDPARole.stats.rawValue: logSumExp]
        }
    }

    /// Whether cuDNN runs both directions of `problem`: with dropout the backward must draw the
    /// forward's mask again, so a forward runs here only when the backward's plan builds too.
    public func takesForwardAndBackward(_ problem: AttentionProblem, type: KernelElementType,
                                        operands: [SDPARole: AttentionOperand]) -> Bool {
        guard var shape = Self.shape(problem, type: type, operands: operands) else { return false }
        // The backward's gradients are contiguous copies of their operand's layout (CUDAAttention's
        // gradient buffers); the forward's strides stand in for them when planning.
        for (gradient, operand) in [(SDPARole.dO, SDPARole.o), (.dQ, .q), (.dK, .k), (.dV, .v)] where shape.strides[gradient] == nil {
            shape.strides[gradient] = shape.strides[operand]
        }
        return (try? plan(backward: false, shape)) != nil && (try? plan(backward: true, shape)) != nil
    }

    /// Backward from the forward's `output` and `logSumExp` and the output gradient `gradient`: writes
    /// `gradQ` (like the queries) and `gradK`, `gradV` (like the keys; summed over each group's heads).
    /// The fp32 scratch cuDNN's graph needs (rowsum(dO ∘ O) and a dQ accumulator) shares the workspace.
    public func attentionBackwardCuDNN(gradQ: AttentionOperand, gradK: AttentionOperand, gradV: AttentionOperand,
                                       gradient: AttentionOperand, output: AttentionOperand, logSumExp: UInt64,
                                       q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
                                       problem p: AttentionProblem, type: KernelElementType, stream: CUDAStream) throws {
        let shape = try Self.require(p, type: type, [.q: q, .k: k, .v: v, .o: output, .dO: gradient, .dQ: gradQ, .dK: gradK, .dV: gradV])
        let plan = try self.plan(backward: true, shape)
        let sumBytes = Self.aligned(p.batch * p.heads * p.queries * 4)
        let accumulatorBytes = Self.aligned(p.batch * p.heads * p.queries * p.headDim * 4)
        try run(plan, stream: stream, scratchBytes: sumBytes + accumulatorBytes, dropout: p.dropout) { scratch in
            if cudnn.version < 90600 {
                // Before cuDNN 9.6 the dQ accumulator had to arrive zeroed (cudnn-frontend memsets it).
                try check(device.driver.cuMemsetD8Async(scratch + UInt64(sumBytes), 0, accumulatorBytes, stream.handle),
                          "cuMemsetD8Async(dQ accumulator)")
            }
            return [SDPARole.q.rawValue: q.address, SDPARole.k.rawValue: k.address, SDPARole.v.rawValue: v.address,
                    SDPARole.o.rawValue: output.address, SDPARole.stats.rawValue: logSumExp, SDPARole.dO.rawValue: gradient.address,
                    SDPARole.dQ.rawValue: gradQ.address, SDPARole.dK.rawValue: gradK.address, SDPARole.dV.rawValue: gradV.address,
                    SDPARole.softmaxSum.rawValue: scratch, SDPARole.dQAccumulator.rawValue: scratch + UInt64(sumBytes)]
        }
    }

    private static func require(_ p: AttentionProblem, type: KernelElementType, _ operands: [SDPARole: AttentionOperand]) throws -> SDPAShape {
        guard p.batch > 0, p.groups > 0, p.perGroup > 0, p.queries > 0, p.keys > 0 else {
            throw CUDAError.invalidArgument("cuDNN attention: empty problem \(p)")
        }
        guard let shape = shape(p, type: type, operands: operands) else {
            throw CUDAError.invalidArgument("cuDNN attention: unsupported problem \(p) for \(type) (needs bf16/fp16, a head dim "
                + "that is a multiple of 8 up to \(CUDAKernels.maxAttentionHeadDim), 16-byte aligned rows, queries <= keys "
                + "(equal with dropout), query heads addressable with one head stride)")
        }
        return shape
    }

    private static func aligned(_ bytes: Int) -> Int { (bytes + 255) / 256 * 256 }

    /// The cached plans for `shape`, built on first use.
    private func plan(backward: Bool, _ shape: SDPAShape) throws -> CuDNNPlanChoice {
        lock.lock()
        defer { lock.unlock() }
        let key = PlanKey(backward: backward, shape: shape)
        if let cached = plans[key] { return try cached.get() }
        guard plans.count < Self.maxCachedPlans else {
            throw CuDNNError(call: "plan cache", status: CuDNNBackend.statusNotSupported,
                             message: "\(Self.maxCachedPlans) attention shapes already planned; not planning more")
        }
        try device.makeCurrent()
        let maskValue = SDPAGraphs.maskValue(cudnnVersion: cudnn.version)
        let spec = backward ? SDPAGraphs.backward(shape, maskValue: maskValue) : SDPAGraphs.forward(shape, maskValue: maskValue)
        let made: Result<CuDNNPlanChoice, CuDNNError>
        do {
            made = .success(CuDNNPlanChoice(try CuDNNGraphBuilder.plans(spec, cudnn: cudnn, handle: handle,
                                                                        limit: tunedCandidates)))
        } catch let error as CuDNNError {
            made = .failure(error)
        }
        plans[key] = made
        return try made.get()
    }

    /// Takes a workspace of the plan's size plus `scratchBytes` (scratch first) for the call, enqueues
    /// the chosen plan on `stream` (on a shape's first call, after timing each candidate on the same
    /// operands) and returns the block to the allocator (later work on the stream may reuse it).
    /// With `dropout`, 256 more bytes after the scratch hold the generator's seed and offset, written
    /// on the stream just before the plan runs. `addresses` binds the operands for each run (and
    /// clears what a run needs cleared).
    private func run(_ choice: CuDNNPlanChoice, stream: CUDAStream, scratchBytes: Int, dropout: DropoutDraw?,
                     addresses: (UInt64) throws -> [Int64: UInt64]) throws {
        try device.makeCurrent()
        let generatorBytes = dropout == nil ? 0 : 256
        let workspaceBytes = choice.workspaceBytes
        let total = scratchBytes + generatorBytes + workspaceBytes
        let block = total > 0 ? try allocator.allocate(bytes: total, stream: stream.allocatorKey) : nil
        defer { block.map(allocator.free) }
        let base = block?.address ?? 0
        try cudnn.check(cudnn.table.cudnnSetStream(handle, stream.handle), "cudnnSetStream")
        func enqueue(_ plan: CuDNNExecutionPlan) throws {
            var bound = try addresses(base)
            if let dropout {
                let state = base + UInt64(scratchBytes)
                // From pageable memory the driver stages the 16 bytes at once and writes them in stream order.
                let values: [Int64] = [Self.generatorSeed(dropout), 0]
                try values.withUnsafeBytes {
                    try check(device.driver.cuMemcpyHtoDAsync(state, $0.baseAddress!, 16, stream.handle),
                              "cuMemcpyHtoDAsync(dropout seed)")
                }
                bound[SDPARole.dropoutSeed.rawValue] = state
                bound[SDPARole.dropoutOffset.rawValue] = state + 8
            }
            let workspace = base + UInt64(scratchBytes + generatorBytes)
            try plan.execute(handle: handle, addresses: bound, workspace: plan.workspaceBytes > 0 ? workspace : 0)
        }
        try enqueue(try choice.plan(stream: stream, enqueue: enqueue))
    }

    /// cuDNN's generator seed for one dropout draw: our (seed, offset) mixed into one 64-bit value
    /// (SplitMix64's finalizer), so every draw of a generator gets its own stream; cuDNN's offset is 0.
    static func generatorSeed(_ dropout: DropoutDraw) -> Int64 {
        func mix(_ value: UInt64) -> UInt64 {
            var z = value &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return Int64(bitPattern: mix(dropout.seed ^ mix(dropout.offset)))
    }
}
