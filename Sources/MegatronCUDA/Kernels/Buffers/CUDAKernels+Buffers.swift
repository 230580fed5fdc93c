/// Whole-buffer kernels (elementwise.cu, reduce.cu, beside this file): fill, uniform random values, axpby, a
/// float32 sum. Grid-stride launches of `elementwiseBlock` threads, at most 32 blocks per SM.
///
///     try kernels.fill(out, count: n, value: 1, type: .bfloat16, stream: stream)
///     try kernels.axpby(out, a, b, alpha: 1, beta: 1, count: n, type: .float32, stream: stream)  // out = a + b
extension CUDAKernels {
    /// Sets `count` elements at `pointer` to `value` (rounded to the element type).
    public func fill(_ pointer: UInt64, count: Int, value: Float, type: KernelElementType, stream: CUDAStream) throws {
        try launchBuffer("fill_\(type.rawValue)", count: count, stream: stream,
                         [.pointer(pointer), .float32(value), .int64(Int64(count))])
    }

    /// Fills with values drawn uniformly from [low, high), a pure function of (seed, index).
    public func uniform(_ pointer: UInt64, count: Int, seed: UInt64, low: Float, high: Float,
                        type: KernelElementType, stream: CUDAStream) throws {
        try launchBuffer("uniform_\(type.rawValue)", count: count, stream: stream,
                         [.pointer(pointer), .int64(Int64(count)), .uint64(seed), .float32(low), .float32(high)])
    }

    /// out = alpha * a + beta * b with 16-byte loads and stores; all pointers 16-byte aligned.
    /// With beta == 0, `b` is not read (pass any pointer).
    public func axpby(_ out: UInt64, _ a: UInt64, _ b: UInt64, alpha: Float, beta: Float, count: Int,
                      type: KernelElementType, stream: CUDAStream) throws {
        for (label, pointer) in [("out", out), ("a", a), ("b", b)] where pointer % 16 != 0 {
            throw CUDAError.invalidArgument("axpby: \(label) pointer 0x\(String(pointer, radix: 16)) is not 16-byte aligned")
        }
        let lanes = 16 / type.byteCount
        try launchBuffer("axpby_\(type.rawValue)", count: (count + lanes - 1) / lanes, stream: stream,
                         [.pointer(out), .pointer(a), .pointer(b), .float32(alpha), .float32(beta), .int64(Int64(count))])
    }

    /// Writes the sum of `count` float32 values at `input` to `out` (one float32). `scratch` must
    /// hold `sumScratchCount` floats. Deterministic for a given count.
    public func sum(_ out: UInt64, _ input: UInt64, count: Int, scratch: UInt64, stream: CUDAStream) throws {
        let blocks = Self.sumBlockCount(count: count, multiprocessors: device.properties.multiprocessorCount)
        try launch("reduce.cu", "sum_f32_partials", grid: .init(blocks), block: Self.elementwiseBlock, stream: stream,
                   [.pointer(scratch), .pointer(input), .int64(Int64(count))])
        try launch("reduce.cu", "sum_f32_final", grid: .init(1), block: .init(1024), stream: stream,
                   [.pointer(out), .pointer(scratch), .int32(Int32(blocks))])
    }

    /// Floats of scratch space `sum` needs.
    public var sumScratchCount: Int { Self.sumBlockCount(count: .max, multiprocessors: device.properties.multiprocessorCount) }

    /// One block per 256 elements, at most 4 per SM (each block loops over its grid-stride slice).
    static func sumBlockCount(count: Int, multiprocessors: Int) -> Int {
        let needed = count / 256 + (count % 256 == 0 ? 0 : 1)   // no overflow for count == .max
        return max(1, min(4 * multiprocessors, needed))
    }

    /// A grid-stride launch of elementwise.cu's `name` over `count` threads' work; nothing for none.
    private func launchBuffer(_ name: String, count: Int, stream: CUDAStream, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        try launch("elementwise.cu", name, grid: .init(gridStrideBlocks(count)), block: Self.elementwiseBlock, stream: stream,
                   arguments)
    }
}
