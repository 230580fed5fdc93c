extension Ops {
    /// Rotary position embedding of `x [..., seq, headDim]` (rank 2 to 5, any strides): on the first
    /// `rotaryDim` channels `x * cos + rotate_half(x) * sin` with Megatron's non-interleaved halves
    /// (`rotate_half(x) = [-x2, x1]`); the other channels pass through. The result is contiguous
    /// in x's shape and dtype.
    ///
    /// `cos` and `sin` are `[seq, rotaryDim]` (shared by every row) or `[x.size(0), seq, rotaryDim]`
    /// (a table per batch row: left-padded prompts), cast to x's dtype first as Megatron does. Math
    /// is fp32 with one rounding of the result. With `backward`, applies the transposed rotation, which
    /// maps the output's gradient to x's. One fused kernel on the GPU (CUDAKernels.rotaryEmbedding).
    ///
    ///     let (cos, sin) = tables(positions: Array(0..<seq))             // [seq, rotaryDim]
    ///     let rotated = Ops.rotaryEmbedding(q, cos: cos, sin: sin)       // q [b, heads, seq, d]
    public static func rotaryEmbedding(_ x: Tensor, cos: Tensor, sin: Tensor, backward: Bool = false) -> Tensor {
        let geometry = RotaryGeometry(x: x, cos: cos, sin: sin)
        let (cos, sin) = (cos.cast(to: x.dtype), sin.cast(to: x.dtype))
        if cudaDevice(x, cos, sin, op: "rotaryEmbedding") != nil {
            return CUDARotary.rotaryEmbedding(x, cos: cos, sin: sin, geometry: geometry, backward: backward)
        }
        let (cosValues, sinValues) = (cos.floats(), sin.floats())
        let (width, rotary, half) = (geometry.headDim, geometry.rotaryDim, geometry.rotaryDim / 2)
        return x.withFloats { source in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                parallelChunks(geometry.rows, grain: 32_768 / width) { rows in
                    for row in rows {
                        let (s, o) = (source.baseAddress! + row * width, out.baseAddress! + row * width)
                        let table = geometry.tableRow(of: row) * rotary
                        for i in 0..<half {
                            let (a, b) = (s[i], s[i + half])
                            let (cosA, cosB) = (cosValues[table + i], cosValues[table + i + half])
                            let (sinA, sinB) = (sinValues[table + i], sinValues[table + i + half])
                            o[i] = backward ? a * cosA + b * sinB : a * cosA - b * sinA
                            o[i + half] = backward ? b * cosB - a * sinA : b * cosB + a * sinB
                        }
                        for j in rotary..<width { o[j] = s[j] }
                    }
                }
            }
        }
    }
}

/// The sizes of one rotary embedding, checked: x `[..., seq, headDim]`, tables `[seq, rotaryDim]`
/// or `[x.size(0), seq, rotaryDim]`.
struct RotaryGeometry {
    let sequence: Int, headDim: Int, rotaryDim: Int
    /// Rows of `headDim` channels in x.
    let rows: Int
    /// Whether each index of x's first dim has its own table.
    let perBatchRow: Bool
    /// Rows of x per index of its first dim.
    let rowsPerBatch: Int

    init(x: Tensor, cos: Tensor, sin: Tensor) {
        precondition((2...5).contains(x.rank), "rotary embedding wants x [..., seq, headDim] of rank 2 to 5, got \(x.shape)")
        precondition(x.dtype.isFloatingPoint && cos.dtype.isFloatingPoint && sin.dtype.isFloatingPoint,
                     "rotary embedding wants floating-point x and tables, got \(x.dtype), \(cos.dtype), \(sin.dtype)")
        precondition(cos.shape == sin.shape, "rotary cos \(cos.shape) and sin \(sin.shape) tables differ in shape")
        (sequence, headDim) = (x.size(-2), x.size(-1))
        perBatchRow = cos.rank == 3
        let expected = perBatchRow ? [x.size(0), sequence] : [sequence]
        precondition((cos.rank == 2 || (cos.rank == 3 && x.rank >= 3)) && Array(cos.shape.dropLast()) == expected,
                     "rotary tables \(cos.shape) do not fit x \(x.shape): want [seq, rotaryDim] or [batch, seq, rotaryDim]")
        rotaryDim = cos.shape.last!
        precondition(rotaryDim > 0 && rotaryDim % 2 == 0 && rotaryDim <= headDim,
                     "rotary dim \(rotaryDim) must be even, positive and at most the head dim \(headDim)")
        rows = x.count / max(headDim, 1)
        rowsPerBatch = rows / max(x.size(0), 1)
    }

    /// The table row that x's contiguous row `row` uses.
    func tableRow(of row: Int) -> Int {
        let position = row % sequence
        return perBatchRow ? row / rowsPerBatch * sequence + position : position
    }
}
