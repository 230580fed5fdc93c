/// The two fp8 storage formats (PyTorch's `float8_e4m3fn` and `float8_e5m2`).
public enum FP8Format: String, Sendable, CaseIterable {
    /// 4 exponent bits, 3 mantissa bits, no infinities, largest finite 448: weights and activations.
    case e4m3
    /// 5 exponent bits, 2 mantissa bits, IEEE-like, largest finite 57344: gradients.
    case e5m2
}

extension CUDAKernels {
    /// out (fp8) = fp8(input * scale) over `count` elements, rounding to nearest even. `scale` is the
    /// device address of one fp32 (0: no scaling). Without `saturate`, overflow gives NaN (e4m3) or
    /// infinity (e5m2) as PyTorch's casts; with it, the largest finite value of that sign.
    ///
    ///     try nn.quantize(q, format: .e4m3, input: x, from: .bfloat16, count: n, scale: scale,
    ///                     saturate: true, stream: stream)
    public func quantize(_ out: UInt64, format: FP8Format, input: UInt64, from type: KernelElementType, count: Int,
                         scale: UInt64 = 0, saturate: Bool = false, stream: CUDAStream) throws {
        let kernel = "cast_\(type.rawValue)_\(format.rawValue)"
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: 8, out, input)
        try launch("fp8.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(input), .pointer(scale), .int64(Int64(count)),
                                    .int32(vectorized ? 1 : 0), .int32(saturate ? 1 : 0)])
    }

    /// The [rows, columns] matrix `input` quantized as `quantize` does into `out`, in one pass that also writes
    /// its transposed codes ([columns, rows]) to `transposed` and max |input| (as `absMax`: NaN when any input is
    /// NaN) to the fp32 at `amax`, each where its address is not 0 (fp8.cu `cast_transpose`). Zeroes `amax` first.
    ///
    ///     try nn.quantizeTransposing(q, transposed: qT, format: .e4m3, input: x, from: .bfloat16, rows: t, columns: h,
    ///                                scale: scale, amax: amax, saturate: true, stream: stream)
    public func quantizeTransposing(_ out: UInt64, transposed: UInt64, format: FP8Format, input: UInt64, from type: KernelElementType,
                                    rows: Int, columns: Int, scale: UInt64 = 0, amax: UInt64 = 0, saturate: Bool = false,
                                    stream: CUDAStream) throws {
        let kernel = "cast_transpose_\(type.rawValue)_\(format.rawValue)"
        try Self.require(rows >= 0 && columns >= 0, "\(kernel): negative shape \(rows) x \(columns)")
        if amax != 0 { try device.zero(amax, bytes: 4, stream: stream) }
        guard rows > 0, columns > 0 else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let tiles = ((rows + 31) / 32) * ((columns + 31) / 32)   // 32 x 32 tiles, blocks of 32 x 8 threads
        try launch("fp8.cu", kernel, grid: .init(max(1, min(tiles, 32 * device.properties.multiprocessorCount))),
                   block: .init(32, 8), stream: stream,
                   [.pointer(out), .pointer(transposed), .pointer(input), .pointer(scale), .pointer(amax),
                    .int64(Int64(rows)), .int64(Int64(columns)), .int32(saturate ? 1 : 0)])
    }

    /// out = fp8 input * scale over `count` elements (`scale`: one fp32 on the device, 0: none), rounded
    /// to nearest even into `type`.
    public func dequantize(_ out: UInt64, to type: KernelElementType, input: UInt64, format: FP8Format, count: Int,
                           scale: UInt64 = 0, stream: CUDAStream) throws {
        let kernel = "cast_\(format.rawValue)_\(type.rawValue)"
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: 8, out, input)
        try launch("fp8.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(input), .pointer(scale), .int64(Int64(count)),
                                    .int32(vectorized ? 1 : 0)])
    }

    /// Writes max |input| over `count` elements to the fp32 at `out` (0 when empty, NaN when any input
    /// is NaN); deterministic. Zeroes `out` first, on the same stream.
    public func absMax(_ out: UInt64, input: UInt64, type: KernelElementType, count: Int, stream: CUDAStream) throws {
        let kernel = "amax_" + type.rawValue
        try Self.requirePointers(kernel, ["out": out])
        try device.zero(out, bytes: 4, stream: stream)
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["input": input])
        let vectorized = Self.vectorizable(columns: 8, input)
        try launch("fp8.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(input), .int64(Int64(count)), .int32(vectorized ? 1 : 0)])
    }
}
