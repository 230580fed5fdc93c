/// Creating tensors: constants, ranges, Swift arrays and seeded random draws.
extension Tensor {
    /// A tensor of `shape` holding `values` (row-major), stored as `dtype`.
    public init(shape: [Int], values: [Float], dtype: DType = .float32) {
        precondition(values.count == Shape.elementCount(shape),
                     "\(values.count) values do not fill shape \(shape)")
        self = Tensor.computed(shape: shape, dtype: dtype) { out in
            values.withUnsafeBufferPointer { out.baseAddress!.update(from: $0.baseAddress!, count: values.count) }
        }
    }

    /// An integer tensor of `shape` holding `values` (row-major).
    public init(shape: [Int], ints values: [Int], dtype: DType = .int64) {
        precondition(values.count == Shape.elementCount(shape), "\(values.count) values do not fill shape \(shape)")
        self.init(zeros: shape, dtype: dtype)
        switch dtype {
        case .int64:
            let p = pointer(as: Int64.self)
            for (i, v) in values.enumerated() { p[i] = Int64(v) }
        case .int32:
            let p = pointer(as: Int32.self)
            for (i, v) in values.enumerated() { p[i] = Int32(v) }
        case .bool:
            let p = pointer(as: UInt8.self)
            for (i, v) in values.enumerated() { p[i] = v != 0 ? 1 : 0 }
        default:
            self = Tensor(shape: shape, values: values.map(Float.init), dtype: dtype)
        }
    }

    /// A one-element tensor of rank 0.
    public init(scalar: Float, dtype: DType = .float32) {
        self.init(shape: [], values: [scalar], dtype: dtype)
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) -> Tensor {
        Tensor(zeros: shape, dtype: dtype, device: device)
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) -> Tensor {
        full(shape, 1, dtype: dtype, device: device)
    }

    /// `value` everywhere; on a GPU one kernel broadcasts the scalar (no host buffer of `shape`).
    public static func full(_ shape: [Int], _ value: Float, dtype: DType = .float32, device: Device = .cpu) -> Tensor {
        if device != .cpu { return Tensor(scalar: value, dtype: dtype).to(device).expanded(to: shape).madeContiguous() }
        return computed(shape: shape, dtype: dtype) { $0.update(repeating: value) }
    }

    /// `start, start + step, ...` below `end`.
    public static func arange(_ start: Int, _ end: Int, step: Int = 1, dtype: DType = .int64, device: Device = .cpu) -> Tensor {
        let values = Array(stride(from: start, to: end, by: step))
        return Tensor(shape: [values.count], ints: values, dtype: dtype).to(device)
    }

    /// Uniform values in [low, high) from the generator's next draw.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, dtype: DType = .float32,
                               generator: PhiloxGenerator) -> Tensor {
        let offset = generator.nextOffset()
        return computed(shape: shape, dtype: dtype) { out in
            Philox.fillUniform(out, seed: generator.seed, offset: offset)
            for i in 0..<out.count { out[i] = low + (high - low) * out[i] }
        }
    }

    /// Normal values with the given mean and standard deviation from the generator's next draw.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, dtype: DType = .float32,
                              generator: PhiloxGenerator) -> Tensor {
        let offset = generator.nextOffset()
        return computed(shape: shape, dtype: dtype) { out in
            Philox.fillNormal(out, seed: generator.seed, offset: offset)
            for i in 0..<out.count { out[i] = mean + std * out[i] }
        }
    }
}
