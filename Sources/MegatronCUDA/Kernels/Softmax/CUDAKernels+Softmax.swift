extension CUDAKernels {
    /// Softmax (or log-softmax with `log: true`) over the last dimension of a [rows, columns]
    /// tensor: `out` and `input` have `type` elements and may be the same buffer.
    ///
    ///     try nn.softmaxForward(probs, input: scores, rows: batch * heads * queries, columns: keys,
    ///                           type: .bfloat16, stream: stream)
    public func softmaxForward(_ out: UInt64, input: UInt64, rows: Int, columns: Int, log: Bool = false,
                               type: KernelElementType, stream: CUDAStream) throws {
        let kernel = (log ? "log_softmax_forward_" : "softmax_forward_") + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: columns, out, input)
        try launch("softmax.cu", kernel, grid: .init(rowBlocks(rows)), block: softmaxBlock(columns: columns, vectorized: vectorized),
                   stream: stream, [.pointer(out), .pointer(input), .int64(Int64(rows)), .int32(Int32(columns)),
                                    .int32(vectorized ? 1 : 0)])
    }

    /// Backward of `softmaxForward` from its output `output` (y) and the output gradient:
    /// softmax dx = y * (g - sum(g * y)); log-softmax dx = g - exp(y) * sum(g), per row.
    /// `dx` may alias `gradient`.
    public func softmaxBackward(_ dx: UInt64, gradient: UInt64, output: UInt64, rows: Int, columns: Int, log: Bool = false,
                                type: KernelElementType, stream: CUDAStream) throws {
        let kernel = (log ? "log_softmax_backward_" : "softmax_backward_") + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.requirePointers(kernel, ["dx": dx, "gradient": gradient, "output": output])
        let vectorized = Self.vectorizable(columns: columns, dx, gradient, output)
        try launch("softmax.cu", kernel, grid: .init(rowBlocks(rows)), block: softmaxBlock(columns: columns, vectorized: vectorized),
                   stream: stream, [.pointer(dx), .pointer(gradient), .pointer(output), .int64(Int64(rows)),
                                    .int32(Int32(columns)), .int32(vectorized ? 1 : 0)])
    }

    /// Threads per row, forward and backward. Vectorized rows go into registers, four 8-element vectors a
    /// thread (SOFTMAX_VECTORS): a 4096-wide bf16 row then takes 128 threads, so fewer warps share a row
    /// and more rows are in flight. The backward does the same: at the norms' 512 backward threads its
    /// 80 registers a thread would leave room for one block an SM.
    func softmaxBlock(columns: Int, vectorized: Bool) -> LaunchDimensions {
        vectorized ? rowBlock(columns: (columns + 3) / 4, vectorized: true) : rowBlock(columns: columns, vectorized: false)
    }
}
