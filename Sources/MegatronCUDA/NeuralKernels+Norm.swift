extension NeuralKernels {
    /// Layer norm over the last dimension of [rows, columns]:
    /// y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + epsilon) (biased variance).
    /// Writes the per-row `mean` and `rstd` (fp32, `rows` each) that the backward needs.
    /// `weight` and `bias` have `columns` elements of `type`; `bias` 0 means none.
    ///
    ///     try nn.layerNormForward(y, mean: mean, rstd: rstd, input: x, weight: gamma, bias: beta,
    ///                             rows: tokens, columns: hidden, epsilon: 1e-5, type: .bfloat16, stream: stream)
    public func layerNormForward(_ y: UInt64, mean: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, bias: UInt64,
                                 rows: Int, columns: Int, epsilon: Float, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "layer_norm_forward_" + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.requirePointers(kernel, ["y": y, "mean": mean, "rstd": rstd, "input": input, "weight": weight])
        let vectorized = Self.vectorizable(columns: columns, y, input, weight, bias)
        try launch("norm.cu", kernel, grid: .init(rowBlocks(rows)), block: rowBlock(columns: columns, vectorized: vectorized),
                   stream: stream, [.pointer(y), .pointer(mean), .pointer(rstd), .pointer(input), .pointer(weight), .pointer(bias),
                                    .int64(Int64(rows)), .int32(Int32(columns)), .float32(epsilon), .int32(vectorized ? 1 : 0)])
    }

    /// RMS norm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + epsilon); writes `rstd` (fp32 per row).
    public func rmsNormForward(_ y: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, rows: Int, columns: Int,
                               epsilon: Float, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "rms_norm_forward_" + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.requirePointers(kernel, ["y": y, "rstd": rstd, "input": input, "weight": weight])
        let vectorized = Self.vectorizable(columns: columns, y, input, weight)
        try launch("norm.cu", kernel, grid: .init(rowBlocks(rows)), block: rowBlock(columns: columns, vectorized: vectorized),
                   stream: stream, [.pointer(y), .pointer(rstd), .pointer(input), .pointer(weight), .int64(Int64(rows)),
                                    .int32(Int32(columns)), .float32(epsilon), .int32(vectorized ? 1 : 0)])
    }

    /// fp32 elements of scratch the norm backward needs: one partial row of parameter gradients
    /// per block (twice with a bias).
    public func normBackwardScratchCount(rows: Int, columns: Int, withBias: Bool) -> Int {
        normBackwardBlocks(rows: rows, columns: columns, withBias: withBias) * columns * (withBias ? 2 : 1)
    }

    /// Layer norm backward from the forward's `mean` and `rstd`: writes dx ([rows, columns], may
    /// alias `gradient`), and overwrites `weightGradient` / `biasGradient` (`columns` of `type`;
    /// bias 0 = none) with their sums over rows. The column sums are deterministic: each block
    /// sums its rows per column in shared memory, writes one partial row into `scratch`
    /// (`normBackwardScratchCount` floats), and a second launch adds the partials in block order.
    public func layerNormBackward(_ dx: UInt64, weightGradient: UInt64, biasGradient: UInt64, gradient: UInt64, input: UInt64,
                                  weight: UInt64, mean: UInt64, rstd: UInt64, rows: Int, columns: Int, scratch: UInt64,
                                  type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "layer_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "mean": mean, "rstd": rstd, "scratch": scratch])
        let withBias = biasGradient != 0
        let blocks = try normBackwardPlan(kernel, rows: rows, columns: columns, withBias: withBias)
        let biasPartials = withBias ? scratch + UInt64(blocks * columns * 4) : 0
        let vectorized = Self.vectorizable(columns: columns, dx, gradient, input, weight)
        try launch("norm.cu", kernel, grid: .init(blocks),
                   block: Self.rowBlock(columns: columns, vectorized: vectorized, limit: normBackwardThreads), sharedMemoryBytes: columns * 4 * (withBias ? 2 : 1), stream: stream,
                   [.pointer(dx), .pointer(scratch), .pointer(biasPartials), .pointer(gradient), .pointer(input), .pointer(weight),
                    .pointer(mean), .pointer(rstd), .int64(Int64(rows)), .int32(Int32(columns)), .int32(vectorized ? 1 : 0)])
        try columnSum(weightGradient, partials: scratch, blocks: blocks, columns: columns, type: type, stream: stream)
        if withBias { try columnSum(biasGradient, partials: biasPartials, blocks: blocks, columns: columns, type: type, stream: stream) }
    }

    /// RMS norm backward: dx and the (overwritten, deterministic) weight gradient, as `layerNormBackward`.
    public func rmsNormBackward(_ dx: UInt64, weightGradient: UInt64, gradient: UInt64, input: UInt64, weight: UInt64,
                                rstd: UInt64, rows: Int, columns: Int, scratch: UInt64, type: KernelElementType,
                                stream: CUDAStream) throws {
        let kernel = "rms_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "rstd": rstd, "scratch": scratch])
        let blocks = try normBackwardPlan(kernel, rows: rows, columns: columns, withBias: false)
        let vectorized = Self.vectorizable(columns: columns, dx, gradient, input, weight)
        try launch("norm.cu", kernel, grid: .init(blocks),
                   block: Self.rowBlock(columns: columns, vectorized: vectorized, limit: normBackwardThreads), sharedMemoryBytes: columns * 4, stream: stream,
                   [.pointer(dx), .pointer(scratch), .pointer(gradient), .pointer(input), .pointer(weight), .pointer(rstd),
                    .int64(Int64(rows)), .int32(Int32(columns)), .int32(vectorized ? 1 : 0)])
        try columnSum(weightGradient, partials: scratch, blocks: blocks, columns: columns, type: type, stream: stream)
    }

    /// Checks the shape and the shared-memory need, and returns the block count.
    private func normBackwardPlan(_ kernel: String, rows: Int, columns: Int, withBias: Bool) throws -> Int {
        try Self.requireShape(kernel, rows: rows, columns: columns)
        let shared = columns * 4 * (withBias ? 2 : 1)
        let limit = device.properties.maxSharedMemoryPerBlockOptin
        try Self.require(shared <= limit, "\(kernel): \(columns) columns need \(shared) bytes of shared memory for the "
                         + "parameter-gradient sums; this device allows \(limit) per block")
        return normBackwardBlocks(rows: rows, columns: columns, withBias: withBias)
    }

    /// As many blocks per SM as shared memory allows (at most 4), never more than rows.
    private func normBackwardBlocks(rows: Int, columns: Int, withBias: Bool) -> Int {
        let shared = max(1, columns * 4 * (withBias ? 2 : 1))
        let perSM = max(1, min(4, device.properties.maxSharedMemoryPerBlockOptin / shared))
        return max(1, min(rows, perSM * device.properties.multiprocessorCount))
    }

    private func columnSum(_ out: UInt64, partials: UInt64, blocks: Int, columns: Int, type: KernelElementType,
                           stream: CUDAStream) throws {
        // 32 columns x 16 slices of the partial rows per block (norm.cu's COLUMN_SUM_SLICES).
        try launch("norm.cu", "column_sum_" + type.rawValue, grid: .init((columns + 31) / 32), block: .init(32, 16),
                   stream: stream, [.pointer(out), .pointer(partials), .int32(Int32(blocks)), .int32(Int32(columns))])
    }
}
