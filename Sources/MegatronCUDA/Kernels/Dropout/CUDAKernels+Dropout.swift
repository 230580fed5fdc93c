/// One draw of inverted dropout inside a fused kernel (flash attention, the residual add before a norm):
/// element i of the draw is kept iff the Philox uniform of index i in (`seed`, `offset`) is at least
/// `probability` (the numbering of `CUDAKernels.dropout` and the CPU's `Philox.fillUniform`), and kept
/// elements are multiplied by `scale`, 1 / (1 - probability) in fp32.
public struct DropoutDraw: Sendable, Equatable {
    public var probability: Float, scale: Float
    public var seed: UInt64, offset: UInt64

    public init(probability: Float, seed: UInt64, offset: UInt64) {
        (self.probability, self.scale, self.seed, self.offset) = (probability, 1 / (1 - probability), seed, offset)
    }

    /// The kernel arguments (p, scale, seed, offset) of a fused kernel's dropout; `none` for kernels without it.
    var arguments: [KernelArgument] { [.float32(probability), .float32(scale), .uint64(seed), .uint64(offset)] }

    static let none = DropoutDraw(probability: 0, seed: 0, offset: 0)
}

/// Dropout over a whole buffer (dropout.cu, beside this file).
extension CUDAKernels {
    /// Inverted dropout matching the CPU's `Philox.fillUniform` draw (`seed`, `offset`) element
    /// for element: keeps x[i] * 1/(1-p) iff uniform[i] >= p. Applying the same call to the
    /// output gradient is the backward. `mask` (0 = none) receives one byte per element, 1 = kept.
    ///
    ///     try nn.dropout(out, mask: 0, input: x, count: n, probability: 0.1, seed: 1234, offset: 7,
    ///                    type: .bfloat16, stream: stream)
    public func dropout(_ out: UInt64, mask: UInt64 = 0, input: UInt64, count: Int, probability: Float, seed: UInt64,
                        offset: UInt64, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "dropout_" + type.rawValue
        try Self.require(probability >= 0 && probability < 1, "\(kernel): probability \(probability) outside [0, 1)")
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let scale = 1 / (1 - probability)   // in fp32, as the CPU computes it
        let vectorized = Self.vectorizable(columns: 8, out, input) && mask % 8 == 0
        try launch("dropout.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(mask), .pointer(input), .int64(Int64(count)), .float32(probability),
                                    .float32(scale), .uint64(seed), .uint64(offset), .int32(vectorized ? 1 : 0)])
    }
}
