/// Conversions between the floating element types (cast.cu, beside this file).
extension CUDAKernels {
    /// Converts `count` elements from one floating type to another, rounding to nearest even.
    ///
    ///     try nn.cast(bf16Weights, to: .bfloat16, input: masterWeights, from: .float32, count: n, stream: stream)
    public func cast(_ out: UInt64, to: KernelElementType, input: UInt64, from: KernelElementType, count: Int,
                     stream: CUDAStream) throws {
        let kernel = "cast_\(from.rawValue)_\(to.rawValue)"
        try Self.require(from != to, "\(kernel): source and destination types are both \(from); use a copy")
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: 8, out, input)
        // Widening casts loop over 4 groups of 4 elements per thread (cast.cu) in one wave of blocks:
        // 8 blocks of 256 threads fill an SM.
        let blocks = to == .float32
            ? max(1, min((count / 4 + 4 * Self.elementwiseBlock.x - 1) / (4 * Self.elementwiseBlock.x),
                         8 * device.properties.multiprocessorCount))
            : gridStrideBlocks(count / (vectorized ? 8 : 1))
        try launch("cast.cu", kernel, grid: .init(blocks), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(input), .int64(Int64(count)), .int32(vectorized ? 1 : 0)])
    }
}
