/// The sizes and strides of one rotary-embedding launch (rope.cu, beside this file): the input is
/// `[outer[0], outer[1], outer[2], sequence, headDim]` with element `strides` for its first four
/// dims (the last is contiguous); the output is contiguous in that shape. The cos and sin tables
/// are `[sequence, rotaryDim]`, one per `outer[0]` index `tableStride` elements apart (0: one
/// table for every row).
public struct RotaryProblem: Sendable, Equatable {
    public var outer: [Int]
    public var sequence: Int
    public var headDim: Int
    public var rotaryDim: Int
    public var strides: [Int]
    public var tableStride: Int
    /// Apply the transposed rotation (the backward: the input is the output's gradient).
    public var backward: Bool

    public init(outer: [Int], sequence: Int, headDim: Int, rotaryDim: Int, strides: [Int], tableStride: Int, backward: Bool) {
        (self.outer, self.sequence, self.headDim, self.rotaryDim, self.strides, self.tableStride, self.backward) =
            (outer, sequence, headDim, rotaryDim, strides, tableStride, backward)
    }

    /// Rows of `headDim` channels.
    public var rows: Int { outer.reduce(sequence, *) }
}

extension CUDAKernels {
    /// Rotary position embedding in one kernel: `out = x * cos + rotate_half(x) * sin` on the first
    /// `rotaryDim` channels (Megatron's non-interleaved halves, `rotate_half(x) = [-x2, x1]`), the
    /// other channels copied; with `problem.backward`, the transposed rotation of a gradient. Math
    /// in fp32; `x`, `cos`, `sin` and `out` are all of `type`.
    ///
    ///     let problem = RotaryProblem(outer: [4, 32, 1], sequence: 2048, headDim: 64, rotaryDim: 64,
    ///                                 strides: qStrides, tableStride: 0, backward: false)
    ///     try nn.rotaryEmbedding(out, input: q, cos: cos, sin: sin, problem: problem, type: .bfloat16, stream: stream)
    ///
    /// Where every stride and channel count is a multiple of 8 and every pointer 16-byte aligned, a
    /// thread moves 8 channels of each half per access; else one at a time.
    public func rotaryEmbedding(_ out: UInt64, input: UInt64, cos: UInt64, sin: UInt64, problem p: RotaryProblem,
                                type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "rope_" + type.rawValue
        try Self.requireRotary(kernel, p)
        try Self.requirePointers(kernel, ["out": out, "input": input, "cos": cos, "sin": sin])
        let vectorized = Self.rotaryVectorizable(p, out, input, cos, sin)
        let block = Self.rotaryBlock(p, vectorized: vectorized)
        let blocks = max(1, min((p.rows + block.y - 1) / block.y, 32 * device.properties.multiprocessorCount))
        let strides = p.strides.map { KernelArgument.int64(Int64($0)) }
        try launch("rope.cu", kernel, grid: .init(blocks), block: block, stream: stream,
                   [.pointer(out), .pointer(input), .pointer(cos), .pointer(sin), .int32(Int32(p.outer[0])), .int32(Int32(p.outer[1])),
                    .int32(Int32(p.outer[2])), .int32(Int32(p.sequence)), .int32(Int32(p.headDim)),
                    .int32(Int32(p.rotaryDim)), .int64(Int64(p.rows))] + strides
                   + [.int64(Int64(p.tableStride)), .int32(p.backward ? 1 : 0), .int32(vectorized ? 1 : 0)])
    }

    static func requireRotary(_ kernel: String, _ p: RotaryProblem) throws {
        try require(p.outer.count == 3 && p.strides.count == 4,
                    "\(kernel): wants 3 outer sizes and 4 strides, got \(p.outer) and \(p.strides)")
        try require((p.outer + [p.sequence, p.headDim]).allSatisfy { $0 > 0 },
                    "\(kernel): sizes \(p.outer + [p.sequence, p.headDim]) must be positive")
        try require(p.rotaryDim > 0 && p.rotaryDim % 2 == 0 && p.rotaryDim <= p.headDim,
                    "\(kernel): rotary dim \(p.rotaryDim) must be even, positive and at most the head dim \(p.headDim)")
        try require((p.strides + [p.tableStride]).allSatisfy { $0 >= 0 }, "\(kernel): negative stride in \(p.strides)")
        // The kernel splits row indices in 32-bit arithmetic.
        try require(p.rows <= Int(Int32.max), "\(kernel): \(p.rows) rows exceed the kernel's 32-bit row index")
    }

    /// Whether 8-channel accesses line up: both halves and the copied tail in whole groups of 8,
    /// every row start a multiple of 8 elements, every pointer 16-byte aligned.
    static func rotaryVectorizable(_ p: RotaryProblem, _ pointers: UInt64...) -> Bool {
        (p.rotaryDim / 2) % 8 == 0 && (p.headDim - p.rotaryDim) % 8 == 0
            && (p.strides + [p.tableStride]).allSatisfy { $0 % 8 == 0 } && pointers.allSatisfy { $0 % 16 == 0 }
    }

    /// `[lanes, rows]` threads: one lane per 8 (or 1) channels of each half plus per 8 (1) copied
    /// channels, at most 256 lanes (wider rows loop), and as many rows as fill 256 threads. With
    /// head dim 64 that is 4 lanes by 64 rows: a warp moves 8 whole rows (8 heads of one position).
    static func rotaryBlock(_ p: RotaryProblem, vectorized: Bool) -> LaunchDimensions {
        let width = vectorized ? 8 : 1
        let lanes = min(256, (p.rotaryDim / 2 + p.headDim - p.rotaryDim) / width)
        return LaunchDimensions(lanes, max(1, 256 / lanes))
    }
}
