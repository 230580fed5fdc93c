/// The sizes of one gated delta rule launch (gated_delta_rule.cu, beside this file): q, k `[batch, time, heads, keyDim]`,
/// v `[batch, time, heads, valueDim]`, g and beta `[batch, time, heads]`, all contiguous fp32.
public struct GatedDeltaRuleProblem: Sendable, Equatable {
    public var batch: Int, time: Int, heads: Int, keyDim: Int, valueDim: Int
    public var scale: Float

    public init(batch: Int, time: Int, heads: Int, keyDim: Int, valueDim: Int, scale: Float) {
        (self.batch, self.time, self.heads, self.keyDim, self.valueDim, self.scale) = (batch, time, heads, keyDim, valueDim, scale)
    }

    /// The kernels' limits: a state column of at most 256 keys per thread, a block of at most 1024 columns.
    public static let maxKeyDim = 256, maxValueDim = 1024
    /// Steps between the backward's saved states (`GDR_CHUNK`).
    public static let chunk = 64

    /// Floats of the backward's scratch: the state at each chunk start, and one chunk's states.
    public var checkpointFloats: Int { batch * heads * ((time + Self.chunk - 1) / Self.chunk) * keyDim * valueDim }
    public var chunkStateFloats: Int { batch * heads * Self.chunk * keyDim * valueDim }
}

extension CUDAKernels {
    /// The gated delta rule's output `out [batch, time, heads, valueDim]`: one block per (batch row, head),
    /// one thread per state column, sequential over time.
    ///
    ///     let p = GatedDeltaRuleProblem(batch: 2, time: 1024, heads: 8, keyDim: 64, valueDim: 64, scale: 0.125)
    ///     try nn.gatedDeltaRuleForward(out, q: q, k: k, v: v, g: g, beta: beta, problem: p, stream: stream)
    public func gatedDeltaRuleForward(_ out: UInt64, q: UInt64, k: UInt64, v: UInt64, g: UInt64, beta: UInt64,
                                      problem p: GatedDeltaRuleProblem, stream: CUDAStream) throws {
        try Self.requireGatedDeltaRule(p)
        try Self.requirePointers("gated_delta_rule_forward", ["out": out, "q": q, "k": k, "v": v, "g": g, "beta": beta])
        try launch("gated_delta_rule.cu", "gated_delta_rule_forward", grid: .init(p.batch * p.heads),
                   block: Self.gatedDeltaRuleBlock(p), stream: stream,
                   [.pointer(out), .pointer(q), .pointer(k), .pointer(v), .pointer(g), .pointer(beta)] + Self.sizes(p))
    }

    /// The gradients of q, k, v, g and beta from `dout`; `dq`, `dk`, `dg` and `dbeta` must be zero (the kernel
    /// adds into them), `dv` is written. `checkpoints` and `chunkStates` are scratch of
    /// `checkpointFloats` and `chunkStateFloats` floats.
    public func gatedDeltaRuleBackward(dq: UInt64, dk: UInt64, dv: UInt64, dg: UInt64, dbeta: UInt64, checkpoints: UInt64,
                                       chunkStates: UInt64, q: UInt64, k: UInt64, v: UInt64, g: UInt64, beta: UInt64,
                                       dout: UInt64, problem p: GatedDeltaRuleProblem, stream: CUDAStream) throws {
        try Self.requireGatedDeltaRule(p)
        try Self.requirePointers("gated_delta_rule_backward",
                                 ["dq": dq, "dk": dk, "dv": dv, "dg": dg, "dbeta": dbeta, "checkpoints": checkpoints,
                                  "chunkStates": chunkStates, "q": q, "k": k, "v": v, "g": g, "beta": beta, "dout": dout])
        try launch("gated_delta_rule.cu", "gated_delta_rule_backward", grid: .init(p.batch * p.heads),
                   block: Self.gatedDeltaRuleBlock(p), stream: stream,
                   [dq, dk, dv, dg, dbeta, checkpoints, chunkStates, q, k, v, g, beta, dout].map { .pointer($0) } + Self.sizes(p))
    }

    static func requireGatedDeltaRule(_ p: GatedDeltaRuleProblem) throws {
        try require([p.batch, p.time, p.heads, p.keyDim, p.valueDim].allSatisfy { $0 > 0 },
                    "gated delta rule: sizes \([p.batch, p.time, p.heads, p.keyDim, p.valueDim]) must be positive")
        try require(p.keyDim <= GatedDeltaRuleProblem.maxKeyDim,
                    "gated delta rule: key head dim \(p.keyDim) exceeds the kernel's \(GatedDeltaRuleProblem.maxKeyDim)")
        try require(p.valueDim <= GatedDeltaRuleProblem.maxValueDim,
                    "gated delta rule: value head dim \(p.valueDim) exceeds the kernel's \(GatedDeltaRuleProblem.maxValueDim)")
        try require(p.batch * p.heads <= Int(Int32.max) && p.time <= Int(Int32.max),
                    "gated delta rule: \(p.batch * p.heads) blocks or \(p.time) steps exceed 32-bit indices")
    }

    /// One thread per state column, rounded up to whole warps (the backward's warp sums need every lane).
    static func gatedDeltaRuleBlock(_ p: GatedDeltaRuleProblem) -> LaunchDimensions {
        LaunchDimensions((p.valueDim + 31) / 32 * 32)
    }

    private static func sizes(_ p: GatedDeltaRuleProblem) -> [KernelArgument] {
        [.int32(Int32(p.time)), .int32(Int32(p.heads)), .int32(Int32(p.keyDim)), .int32(Int32(p.valueDim)), .float32(p.scale)]
    }
}
