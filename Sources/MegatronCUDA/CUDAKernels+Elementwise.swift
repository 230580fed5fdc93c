/// Pointwise activation functions with a fused backward.
public enum Activation: String, Sendable, CaseIterable {
    /// GeLU, tanh approximation (Megatron's and GPT-2's default).
    case geluTanh = "gelu_tanh"
    /// GeLU with the exact erf.
    case geluErf = "gelu_erf"
    /// x * sigmoid(x).
    case silu
}

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

extension CUDAKernels {
    /// out = activation(input) over `count` elements (may be in place).
    ///
    ///     try nn.activationForward(.geluTanh, out: h, input: h, count: n, type: .bfloat16, stream: stream)
    public func activationForward(_ activation: Activation, out: UInt64, input: UInt64, count: Int, type: KernelElementType,
                                  stream: CUDAStream) throws {
        let kernel = "\(activation.rawValue)_forward_\(type.rawValue)"
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: 8, out, input)
        try launch("activation.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(out), .pointer(input), .int64(Int64(count)), .int32(vectorized ? 1 : 0)])
    }

    /// dx = gradient * activation'(input) (dx may alias gradient).
    public func activationBackward(_ activation: Activation, dx: UInt64, gradient: UInt64, input: UInt64, count: Int,
                                   type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "\(activation.rawValue)_backward_\(type.rawValue)"
        guard try checkCount(kernel, count) else { return }
        try Self.requirePointers(kernel, ["dx": dx, "gradient": gradient, "input": input])
        let vectorized = Self.vectorizable(columns: 8, dx, gradient, input)
        try launch("activation.cu", kernel, grid: .init(gridStrideBlocks(count / (vectorized ? 8 : 1))), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(dx), .pointer(gradient), .pointer(input), .int64(Int64(count)), .int32(vectorized ? 1 : 0)])
    }

    /// SwiGLU: input [rows, 2 * half] (a = first half of each row, b = second) -> out [rows, half] = silu(a) * b.
    public func swigluForward(_ out: UInt64, input: UInt64, rows: Int, half: Int, type: KernelElementType,
                              stream: CUDAStream) throws {
        try gatedLinearUnitForward(out, input: input, rows: rows, half: half, quickGelu: false, type: type, stream: stream)
    }

    /// SwiGLU backward: inputGradient [rows, 2 * half] = [g * b * silu'(a), g * silu(a)].
    public func swigluBackward(_ inputGradient: UInt64, gradient: UInt64, input: UInt64, rows: Int, half: Int,
                               type: KernelElementType, stream: CUDAStream) throws {
        try gatedLinearUnitBackward(inputGradient, gradient: gradient, input: input, rows: rows, half: half, quickGelu: false,
                                    type: type, stream: stream)
    }

    /// A gated linear unit: input [rows, 2 * half] (gate a, linear b) -> out [rows, half] =
    /// F(min(a, clamp)) * (clamp(b, -clamp, clamp) + linearOffset), F SiLU or (`quickGelu`) x·sigmoid(1.702x).
    public func gatedLinearUnitForward(_ out: UInt64, input: UInt64, rows: Int, half: Int, quickGelu: Bool,
                                       linearOffset: Float = 0, clampValue: Float? = nil, type: KernelElementType,
                                       stream: CUDAStream) throws {
        let kernel = (quickGelu ? "quick_geglu" : "swiglu") + "_forward_" + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: half)
        try Self.requirePointers(kernel, ["out": out, "input": input])
        let vectorized = Self.vectorizable(columns: half, out, input)
        try launch("activation.cu", kernel, grid: .init(gridStrideBlocks(rows * half / (vectorized ? 8 : 1))),
                   block: Self.elementwiseBlock, stream: stream,
                   [.pointer(out), .pointer(input), .int64(Int64(rows)), .int32(Int32(half)), .int32(vectorized ? 1 : 0),
                    .float32(linearOffset), .float32(clampValue ?? .infinity)])
    }

    /// The gated linear unit's backward: inputGradient [rows, 2 * half] = [g (b' + offset) F'(a'), g F(a')],
    /// zero where the clamp cut an input off.
    public func gatedLinearUnitBackward(_ inputGradient: UInt64, gradient: UInt64, input: UInt64, rows: Int, half: Int,
                                        quickGelu: Bool, linearOffset: Float = 0, clampValue: Float? = nil,
                                        type: KernelElementType, stream: CUDAStream) throws {
        let kernel = (quickGelu ? "quick_geglu" : "swiglu") + "_backward_" + type.rawValue
        try Self.requireShape(kernel, rows: rows, columns: half)
        try Self.requirePointers(kernel, ["inputGradient": inputGradient, "gradient": gradient, "input": input])
        let vectorized = Self.vectorizable(columns: half, inputGradient, gradient, input)
        try launch("activation.cu", kernel, grid: .init(gridStrideBlocks(rows * half / (vectorized ? 8 : 1))),
                   block: Self.elementwiseBlock, stream: stream,
                   [.pointer(inputGradient), .pointer(gradient), .pointer(input), .int64(Int64(rows)), .int32(Int32(half)),
                    .int32(vectorized ? 1 : 0), .float32(linearOffset), .float32(clampValue ?? .infinity)])
    }

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

    /// False for an empty tensor (nothing to launch); throws for a negative count.
    func checkCount(_ kernel: String, _ count: Int) throws -> Bool {
        try Self.require(count >= 0, "\(kernel): negative element count \(count)")
        return count > 0
    }
}
