/// One attention operand on the device: its address and strides in elements. Queries, outputs and
/// their gradients are addressed as `[batch, group, headInGroup, row, dim]`, keys and values as
/// `[batch, group, row, dim]` (`head` unused); the last dim is contiguous.
public struct AttentionOperand: Sendable {
    public var address: UInt64
    public var batchStride: Int
    public var groupStride: Int
    public var headStride: Int
    public var rowStride: Int

    public init(address: UInt64, batchStride: Int, groupStride: Int, headStride: Int = 0, rowStride: Int) {
        (self.address, self.batchStride, self.groupStride, self.headStride, self.rowStride) =
            (address, batchStride, groupStride, headStride, rowStride)
    }

    var queryArguments: [KernelArgument] {
        [.pointer(address), .int64(Int64(batchStride)), .int64(Int64(groupStride)), .int64(Int64(headStride)), .int64(Int64(rowStride))]
    }

    var keyArguments: [KernelArgument] {
        [.pointer(address), .int64(Int64(batchStride)), .int64(Int64(groupStride)), .int64(Int64(rowStride))]
    }
}

/// The sizes of one attention problem: `groups` key/value heads, each shared by `perGroup` query
/// heads; `queries` query rows attend to `keys` key rows (the queries are the last positions).
public struct AttentionProblem: Sendable, Equatable {
    public var batch: Int, groups: Int, perGroup: Int, queries: Int, keys: Int, headDim: Int
    public var causal: Bool
    /// Multiplies q·k before the softmax (usually 1/sqrt(headDim)).
    public var scale: Float
    /// Dropout on the probabilities, nil for none: probability (b, h, i, j) of `[batch, heads, queries,
    /// keys]` is element ((b · heads + h) · queries + i) · keys + j of the draw (MegatronTensor's
    /// AttentionDropout). cuDNN draws its own numbers from the draw's seed and offset instead (`CuDNNAttention`).
    public var dropout: DropoutDraw?
    /// A sliding window (causal only): query i sees keys i + (keys - queries) - window ... i + (keys - queries);
    /// nil sees every earlier key.
    public var window: Int?

    public init(batch: Int, groups: Int, perGroup: Int, queries: Int, keys: Int, headDim: Int, causal: Bool, scale: Float,
                dropout: DropoutDraw? = nil, window: Int? = nil) {
        (self.batch, self.groups, self.perGroup, self.queries, self.keys, self.headDim, self.causal, self.scale) =
            (batch, groups, perGroup, queries, keys, headDim, causal, scale)
        self.dropout = dropout
        self.window = window
    }

    public var heads: Int { groups * perGroup }
}

extension CUDAKernels {
    /// The largest head dim the flash-attention kernels (and cuDNN's on Hopper) take.
    public static let maxAttentionHeadDim = 256

    /// Whether the flash-attention kernels are built for head dim `d`: a multiple of 8 up to 256.
    /// Each head dim is its own NVRTC program (64 and 128 compiled at start-up, others on first use).
    public static func supportsAttentionHeadDim(_ d: Int) -> Bool { d > 0 && d % 8 == 0 && d <= maxAttentionHeadDim }

    /// Why head dim `d` has no fused attention, nil when it has.
    public static func attentionHeadDimProblem(_ d: Int) -> String? {
        supportsAttentionHeadDim(d) ? nil
            : "fused attention (cuDNN's SDPA or our flash-attention kernels) takes head dims that are multiples of 8 up to "
                + "\(maxAttentionHeadDim), not \(d)"
    }

    /// Whether the flash-attention kernels take this problem: bf16 or fp16, a head dim that is a
    /// multiple of 8 up to 256, every operand 16-byte aligned with row, head, group and batch strides
    /// that keep rows aligned, and sizes within the kernels' 32-bit indices and the grid's limits.
    public static func supportsAttention(_ problem: AttentionProblem, type: KernelElementType, operands: [AttentionOperand]) -> Bool {
        guard type != .float32, supportsAttentionHeadDim(problem.headDim) else { return false }
        let aligned = operands.allSatisfy { op in
            op.address % 16 == 0 && [op.batchStride, op.groupStride, op.headStride, op.rowStride].allSatisfy { $0 % 8 == 0 }
        }
        return aligned && problem.queries <= problem.keys && (problem.window == nil || problem.causal) && problem.keys < Int(Int32.max) / 2
            && problem.heads <= 65535 && problem.batch <= 65535 && problem.heads * problem.queries < Int(Int32.max)
    }

    /// How the flash-attention kernels of one head dim tile their work (the program's FA_TILING,
    /// `programSource`). Every CTA has 4 warps; a warp owns `tiles` x 16 rows. The forward takes two
    /// query tiles per warp, so that each K/V fragment read from shared memory feeds two products; past 64 columns the kernels step over fewer keys so the accumulators
    /// stay in registers (NVRTC's -Xptxas=-v shows almost no spills up to 128).
    /// Past 128 a warp owns one tile and dK/dV takes 16 queries a step; their two D-wide accumulators
    /// still spill: cuDNN is the fast path there.
    struct AttentionTiling: Equatable {
        var forwardTiles: Int, forwardKeys: Int
        var dkdvTiles: Int, dkdvQueries: Int
        var dqTiles: Int, dqKeys: Int

        var forwardRows: Int { 64 * forwardTiles }
        var dkdvKeys: Int { 64 * dkdvTiles }
        var dqRows: Int { 64 * dqTiles }

        static func forHeadDim(_ d: Int) -> AttentionTiling {
            switch paddedHeadDim(d) {
            case ...64: return AttentionTiling(forwardTiles: 2, forwardKeys: 64, dkdvTiles: 2, dkdvQueries: 32, dqTiles: 2, dqKeys: 32)
            case ...128: return AttentionTiling(forwardTiles: 2, forwardKeys: 32, dkdvTiles: 1, dkdvQueries: 32, dqTiles: 1, dqKeys: 32)
            default: return AttentionTiling(forwardTiles: 1, forwardKeys: 32, dkdvTiles: 1, dkdvQueries: 16, dqTiles: 1, dqKeys: 16)
            }
        }

        /// The head dim the kernels compute on: `d` rounded up to the tensor cores' 16 (the tiles are
        /// zero-filled past `d`).
        static func paddedHeadDim(_ d: Int) -> Int { (d + 15) / 16 * 16 }

        /// The program's FA_TILING definition for this tiling.
        var macroDefinition: String {
            "#define FA_TILING \(forwardTiles), \(forwardKeys), \(dkdvTiles), \(dkdvQueries), \(dqTiles), \(dqKeys)"
        }

        /// Dynamic shared memory of each kernel: tiles of pitch paddedHeadDim + 8 bf16/fp16 elements.
        func sharedBytes(headDim d: Int) -> (forward: Int, dkdv: Int, dkdvWithDQ: Int, dq: Int) {
            let row = (Self.paddedHeadDim(d) + 8) * 2
            let dkdv = (2 * dkdvKeys + 4 * dkdvQueries) * row + 16 * dkdvQueries   // K, V, double-buffered Q, dO, LSE, delta
            return ((forwardRows + 4 * forwardKeys) * row,                      // Q, double-buffered K and V
                    dkdv,
                    dkdv + dkdvKeys * (dkdvQueries + 8) * 2,                     // and the staged dSᵀ
                    (2 * dqRows + 4 * dqKeys) * row)                             // Q, dO, double-buffered K and V
        }
    }

    /// Flash-attention forward: writes `output` (addressed like the queries) and the natural-log
    /// row log-sum-exp of the scaled scores, `logSumExp` fp32 `[batch, heads, queries]` contiguous
    /// (with `problem.dropout`, that of the undropped scores). `sinks` (fp32 `[heads]`, 0 for none) adds one
    /// logit per head to every row's softmax denominator; the log-sum-exp then counts it.
    ///
    ///     try nn.attentionForward(output: o, logSumExp: lse, q: q, k: k, v: v, problem: problem,
    ///                             type: .bfloat16, stream: stream)
    public func attentionForward(output: AttentionOperand, logSumExp: UInt64, q: AttentionOperand, k: AttentionOperand,
                                 v: AttentionOperand, problem: AttentionProblem, sinks: UInt64 = 0, type: KernelElementType,
                                 stream: CUDAStream) throws {
        let kernel = Self.attentionKernel("flash_forward", problem, type)
        try Self.requireAttention(kernel, problem, type: type, [output, q, k, v])
        try Self.requirePointers(kernel, ["logSumExp": logSumExp])
        let p = problem, tiling = AttentionTiling.forHeadDim(p.headDim)
        try launch("flash_attention.cu", kernel, grid: .init(Self.blocks(p.queries, tiling.forwardRows), p.heads, p.batch),
                   block: .init(128), sharedMemoryBytes: tiling.sharedBytes(headDim: p.headDim).forward, stream: stream,
                   q.queryArguments + k.keyArguments + v.keyArguments + output.queryArguments
                       + [.pointer(logSumExp)] + Self.sizeArguments(p) + [.float32(p.scale * Self.log2e), .int32(p.causal ? 1 : 0)]
                       + Self.dropoutArguments(p) + [.int32(Self.windowArgument(p)), .pointer(sinks)])
    }

    /// Flash-attention backward from the forward's `output` and `logSumExp` and the output gradient
    /// `gradient` (addressed like the queries). Writes `gradQ` (addressed like the queries) and
    /// `gradK`, `gradV` (like the keys), dK and dV summed over each group's query heads in a fixed order.
    /// `delta` is fp32 scratch of `batch * heads * queries` elements.
    ///
    /// With `dqAccumulator` (fp32 `[batch, heads, queries, headDim]`, zeroed by the caller) the key-block
    /// kernel also adds each tile's share of dQ there with atomics and one pass rounds it into `gradQ`:
    /// five products per tile instead of seven, but dQ's float sums then vary in order from run to run.
    /// Without it a second kernel accumulates dQ per query block in a fixed order (deterministic).
    /// `problem.dropout` must be the forward's: the kernels draw its mask again.
    public func attentionBackward(gradQ: AttentionOperand, gradK: AttentionOperand, gradV: AttentionOperand, delta: UInt64,
                                  dqAccumulator: UInt64?, gradient: AttentionOperand, output: AttentionOperand,
                                  logSumExp: UInt64, q: AttentionOperand, k: AttentionOperand, v: AttentionOperand,
                                  problem p: AttentionProblem, type: KernelElementType, stream: CUDAStream) throws {
        let suffix = "d\(p.headDim)_\(type.rawValue)"
        try Self.requireAttention("flash_backward_" + suffix, p, type: type, [gradient, output, q, k, v, gradQ, gradK, gradV])
        try Self.requirePointers("flash_backward_" + suffix, ["delta": delta, "logSumExp": logSumExp])
        try launch("flash_attention.cu", "flash_backward_delta_" + suffix,
                   grid: .init((p.heads * p.queries + 3) / 4, p.batch), block: .init(128), stream: stream,
                   output.queryArguments + gradient.queryArguments
                       + [.pointer(delta), .int32(Int32(p.groups)), .int32(Int32(p.perGroup)), .int32(Int32(p.queries)),
                          .int32(Int32(p.headDim))])
        let operands = q.queryArguments + k.keyArguments + v.keyArguments + gradient.queryArguments
            + [.pointer(logSumExp), .pointer(delta)]
        let tail: [KernelArgument] = Self.sizeArguments(p) + [.float32(p.scale * Self.log2e), .float32(p.scale), .int32(p.causal ? 1 : 0)]
            + Self.dropoutArguments(p) + [.int32(Self.windowArgument(p))]
        let tiling = AttentionTiling.forHeadDim(p.headDim), shared = tiling.sharedBytes(headDim: p.headDim)
        let keyBlocks = LaunchDimensions(Self.blocks(p.keys, tiling.dkdvKeys), p.groups, p.batch)
        let keyOutputs = gradK.keyArguments + gradV.keyArguments
        if let accumulator = dqAccumulator {
            try Self.requirePointers("flash_backward_" + suffix, ["dqAccumulator": accumulator])
            try launch("flash_attention.cu", Self.attentionKernel("flash_backward_dkdvdq", p, type), grid: keyBlocks, block: .init(128),
                       sharedMemoryBytes: shared.dkdvWithDQ, stream: stream,
                       operands + keyOutputs + [.pointer(accumulator)] + tail)
            let chunks = p.heads * p.queries * p.headDim / 8
            try launch("flash_attention.cu", "flash_backward_dq_finalize_" + suffix, grid: .init(Self.blocks(chunks, 128), p.batch),
                       block: .init(128), stream: stream,
                       [.pointer(accumulator)] + gradQ.queryArguments
                           + [.int32(Int32(p.groups)), .int32(Int32(p.perGroup)), .int32(Int32(p.queries)),
                              .int32(Int32(p.headDim)), .float32(p.scale)])
            return
        }
        try launch("flash_attention.cu", Self.attentionKernel("flash_backward_dkdv", p, type), grid: keyBlocks, block: .init(128),
                   sharedMemoryBytes: shared.dkdv, stream: stream, operands + keyOutputs + [.pointer(0)] + tail)
        try launch("flash_attention.cu", Self.attentionKernel("flash_backward_dq", p, type),
                   grid: .init(Self.blocks(p.queries, tiling.dqRows), p.heads, p.batch),
                   block: .init(128), sharedMemoryBytes: shared.dq, stream: stream, operands + gradQ.queryArguments + tail)
    }

    private static let log2e: Float = 1.442_695_040_888_963_4

    /// `role` of the problem's variant (with or without dropout), head dim and type:
    /// `flash_forward_dropout_d80_bf16`.
    static func attentionKernel(_ role: String, _ p: AttentionProblem, _ type: KernelElementType) -> String {
        "\(role)\(p.dropout == nil ? "" : "_dropout")_d\(p.headDim)_\(type.rawValue)"
    }

    /// The dropout arguments every flash-attention kernel takes (ignored by the kernels without dropout).
    private static func dropoutArguments(_ p: AttentionProblem) -> [KernelArgument] { (p.dropout ?? .none).arguments }

    /// The window as the kernels take it: -1 for none.
    private static func windowArgument(_ p: AttentionProblem) -> Int32 { Int32(clamping: p.window ?? -1) }

    private static func blocks(_ rows: Int, _ perBlock: Int) -> Int { (rows + perBlock - 1) / perBlock }

    private static func sizeArguments(_ p: AttentionProblem) -> [KernelArgument] {
        [.int32(Int32(p.groups)), .int32(Int32(p.perGroup)), .int32(Int32(p.queries)), .int32(Int32(p.keys))]
    }

    private static func requireAttention(_ kernel: String, _ p: AttentionProblem, type: KernelElementType, _ operands: [AttentionOperand]) throws {
        try require(p.batch > 0 && p.groups > 0 && p.perGroup > 0 && p.queries > 0 && p.keys > 0,
                    "\(kernel): empty problem \(p)")
        try require(supportsAttention(p, type: type, operands: operands),
                    "\(kernel): unsupported problem \(p) for \(type) (needs bf16/fp16, a head dim that is a multiple of 8 up to "
                        + "\(maxAttentionHeadDim), 16-byte aligned rows, queries <= keys)")
    }
}
