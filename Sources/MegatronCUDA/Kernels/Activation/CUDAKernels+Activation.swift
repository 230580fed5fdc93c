/// Pointwise activation functions with a fused backward.
public enum Activation: String, Sendable, CaseIterable {
    /// GeLU, tanh approximation (Megatron's and GPT-2's default).
    case geluTanh = "gelu_tanh"
    /// GeLU with the exact erf.
    case geluErf = "gelu_erf"
    /// x * sigmoid(x).
    case silu
}

/// Activations and gated linear units (activation.cu, beside this file).
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
}
