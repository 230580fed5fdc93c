import CCUDA
import Foundation

/// Flash attention through cuDNN's fused SDPA engines (forward with log-sum-exp, and backward),
/// taking the same operands as `NeuralKernels.attentionForward` / `attentionBackward`: bf16 or fp16,
/// head dims 64 and 128, causal or not, GQA. One finalized plan is cached per `SDPAShape` (sizes,
/// strides, type, causal, scale); workspaces come from the caching allocator for each call.
///
///     let attention = try CuDNNAttention(device: device, allocator: allocator)
///     try attention.attentionForwardCuDNN(output: o, logSumExp: lse, q: q, k: k, v: v, problem: problem,
///                                         type: .bfloat16, stream: stream)
///
/// NOTE: written without a GPU and never yet run: see the cudnn-sdpa branch report for what the
/// first device session must check.
public final class CuDNNAttention {
    public let device: CUDADevice
    private let cudnn: CuDNNLibrary
    private let handle: cudnnHandle_t
    private let allocator: CachingAllocator
    private let lock = NSLock()
    /// Plans by direction and shape; a shape no engine takes is remembered as its error, so it is not retried.
    private var plans: [PlanKey: Result<CuDNNExecutionPlan, CuDNNError>] = [:]

    /// Shapes planned at most: each new shape costs cuDNN a plan build (often an NVRTC compile, up to
    /// seconds), so a caller whose shapes keep changing (generation's growing key count) gets
    /// `isNotSupported` past this many and runs our kernels instead of compiling without end.
    public static let maxCachedPlans = 64

    private struct PlanKey: Hashable {
        var backward: Bool
        var shape: SDPAShape
    }

    /// Opens cuDNN (throws `CUDAError.libraryUnavailable` naming what to install) and creates a handle on `device`.
    public init(device: CUDADevice, allocator: CachingAllocator) throws {
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
            let s = key.shape
            return "\(key.backward ? "backward" : "forward") b\(s.batch) h\(s.heads)/\(s.kvHeads) s\(s.queries) t\(s.keys) "
                + "d\(s.headDim) \(s.dataType) causal \(s.causal): \(error)"
        }
    }

    /// The problem as cuDNN's 4-D `[batch, head, row, dim]` tensors, or nil where cuDNN cannot take it:
    /// fp32, a head dim other than 64 or 128, rows not 16-byte aligned, or query heads whose group and
    /// in-group strides do not fold into one head stride (e.g. q interleaved with k and v per group).
    public static func shape(_ problem: AttentionProblem, type: KernelElementType, operands: [SDPARole: AttentionOperand]) -> SDPAShape? {
        guard type != .float32, NeuralKernels.attentionHeadDims.contains(problem.headDim),
              problem.queries <= problem.keys else { return nil }
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
            case .stats, .softmaxSum, .dQAccumulator:
                return nil
            }
        }
        return SDPAShape(batch: problem.batch, heads: problem.heads, kvHeads: problem.groups, queries: problem.queries,
                         keys: problem.keys, headDim: problem.headDim, dataType: type == .bfloat16 ? .bfloat16 : .half,
                         causal: problem.causal, scale: problem.scale, strides: strides)
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
        try run(plan, stream: stream, scratchBytes: 0) { _ in
            [SDPARole.q.rawValue: q.address, SDPARole.k.rawValue: k.address, SDPARole.v.rawValue: v.address,
             SDPARole.o.rawValue: output.address, SDPARole.stats.rawValue: logSumExp]
        }
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
        try run(plan, stream: stream, scratchBytes: sumBytes + accumulatorBytes) { scratch in
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
            throw CUDAError.invalidArgument("cuDNN attention: unsupported problem \(p) for \(type) (needs bf16/fp16, head dim 64 "
                + "or 128, 16-byte aligned rows, queries <= keys, query heads addressable with one head stride)")
        }
        return shape
    }

    private static func aligned(_ bytes: Int) -> Int { (bytes + 255) / 256 * 256 }

    /// The cached plan for `shape`, built on first use.
    private func plan(backward: Bool, _ shape: SDPAShape) throws -> CuDNNExecutionPlan {
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
        let made: Result<CuDNNExecutionPlan, CuDNNError>
        do {
            made = .success(try CuDNNGraphBuilder.plan(spec, cudnn: cudnn, handle: handle))
        } catch let error as CuDNNError {
            made = .failure(error)
        }
        plans[key] = made
        return try made.get()
    }

    /// Takes a workspace of the plan's size plus `scratchBytes` (scratch first) for the call, enqueues
    /// the plan on `stream` and returns the block to the allocator (later work on the stream may reuse it).
    private func run(_ plan: CuDNNExecutionPlan, stream: CUDAStream, scratchBytes: Int,
                     addresses: (UInt64) throws -> [Int64: UInt64]) throws {
        try device.makeCurrent()
        let total = scratchBytes + plan.workspaceBytes
        let block = total > 0 ? try allocator.allocate(bytes: total, stream: stream.allocatorKey) : nil
        defer { block.map(allocator.free) }
        let base = block?.address ?? 0
        let bound = try addresses(base)
        try cudnn.check(cudnn.table.cudnnSetStream(handle, stream.handle), "cudnnSetStream")
        try plan.execute(handle: handle, addresses: bound, workspace: plan.workspaceBytes > 0 ? base + UInt64(scratchBytes) : 0)
    }
}
