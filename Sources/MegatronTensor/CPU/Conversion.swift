/// Conversions between a contiguous buffer of any dtype and fp32 / Int values.
enum Conversion {
    /// Reads `count` contiguous elements of `dtype` at `src` into `dst` as Float.
    static func toFloat(_ src: UnsafeRawPointer, _ dtype: DType, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        switch dtype {
        case .float32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .bfloat16: map(src, UInt16.self, dst, count) { FloatFormats.float(bfloat16Bits: $0) }
        case .float16: map(src, Float16.self, dst, count) { Float($0) }
        case .float8E4M3: map(src, UInt8.self, dst, count) { FloatFormats.float(float8E4M3Bits: $0) }
        case .float8E5M2: map(src, UInt8.self, dst, count) { FloatFormats.float(float8E5M2Bits: $0) }
        case .int32: map(src, Int32.self, dst, count) { Float($0) }
        case .int64: map(src, Int64.self, dst, count) { Float($0) }
        case .bool: map(src, UInt8.self, dst, count) { $0 != 0 ? 1 : 0 }
        }
    }

    /// Writes `count` Floats to contiguous `dtype` elements, rounding to nearest even (ints truncate toward zero).
    static func fromFloat(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _ dtype: DType, _ count: Int) {
        switch dtype {
        case .float32: dst.assumingMemoryBound(to: Float.self).update(from: src, count: count)
        case .bfloat16: store(src, dst, UInt16.self, count) { FloatFormats.bfloat16Bits($0) }
        case .float16: store(src, dst, Float16.self, count) { Float16($0) }
        case .float8E4M3: store(src, dst, UInt8.self, count) { FloatFormats.float8E4M3Bits($0) }
        case .float8E5M2: store(src, dst, UInt8.self, count) { FloatFormats.float8E5M2Bits($0) }
        case .int32: store(src, dst, Int32.self, count) { Int32($0) }
        case .int64: store(src, dst, Int64.self, count) { Int64($0) }
        case .bool: store(src, dst, UInt8.self, count) { $0 != 0 ? 1 : 0 }
        }
    }

    /// Reads contiguous integer-like elements as Int.
    static func toInt(_ src: UnsafeRawPointer, _ dtype: DType, _ count: Int) -> [Int] {
        switch dtype {
        case .int32: return (0..<count).map { Int(src.assumingMemoryBound(to: Int32.self)[$0]) }
        case .int64: return (0..<count).map { Int(src.assumingMemoryBound(to: Int64.self)[$0]) }
        case .bool: return (0..<count).map { Int(src.assumingMemoryBound(to: UInt8.self)[$0]) }
        default:
            var f = [Float](repeating: 0, count: count)
            f.withUnsafeMutableBufferPointer { toFloat(src, dtype, $0.baseAddress!, count) }
            return f.map { Int($0) }
        }
    }

    @inline(__always)
    private static func map<S>(_ src: UnsafeRawPointer, _: S.Type, _ dst: UnsafeMutablePointer<Float>, _ count: Int,
                               _ f: (S) -> Float) {
        let s = src.assumingMemoryBound(to: S.self)
        for i in 0..<count { dst[i] = f(s[i]) }
    }

    @inline(__always)
    private static func store<D>(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, _: D.Type, _ count: Int,
                                 _ f: (Float) -> D) {
        let d = dst.assumingMemoryBound(to: D.self)
        for i in 0..<count { d[i] = f(src[i]) }
    }
}

extension Tensor {
    /// All elements in row-major order as Float (any dtype, any layout).
    public func floats() -> [Float] {
        if device != .cpu { return to(.cpu).floats() }
        let c = madeContiguous()
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { Conversion.toFloat(c.pointer(as: UInt8.self), dtype, $0.baseAddress!, count) }
        return out
    }

    /// All elements in row-major order as Int (floats truncate toward zero).
    public func ints() -> [Int] {
        if device != .cpu { return to(.cpu).ints() }
        let c = madeContiguous()
        return Conversion.toInt(c.pointer(as: UInt8.self), dtype, count)
    }

    /// The single element of a one-element tensor.
    public func item() -> Float {
        precondition(count == 1, "item() of a tensor with \(count) elements")
        return floats()[0]
    }

    /// Calls `body` with the elements as contiguous fp32, without a copy when the tensor already is one.
    public func withFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        if device != .cpu { return try floats().withUnsafeBufferPointer(body) }
        if dtype == .float32 && isContiguous {
            return try body(UnsafeBufferPointer(start: pointer(as: Float.self), count: count))
        }
        return try floats().withUnsafeBufferPointer(body)
    }

    /// A copy converted to `dtype`, rounding to nearest even. Returns `self` when the dtype already matches.
    public func cast(to target: DType) -> Tensor {
        if target == dtype { return self }
        if device != .cpu { return CUDAOps.contiguousCopy(self, dtype: target) }
        let out = Tensor(zeros: shape, dtype: target, device: device)
        withFloats { Conversion.fromFloat($0.baseAddress!, out.storage.pointer, target, count) }
        return out
    }

    /// A contiguous tensor of `shape` and `dtype` whose fp32 values `fill` writes.
    public static func computed(shape: [Int], dtype: DType = .float32,
                                _ fill: (UnsafeMutableBufferPointer<Float>) -> Void) -> Tensor {
        let count = Shape.elementCount(shape)
        if dtype == .float32 {
            let out = Tensor(zeros: shape, dtype: .float32)
            fill(UnsafeMutableBufferPointer(start: out.pointer(as: Float.self), count: count))
            return out
        }
        var scratch = [Float](repeating: 0, count: count)
        scratch.withUnsafeMutableBufferPointer { fill($0) }
        let out = Tensor(zeros: shape, dtype: dtype)
        scratch.withUnsafeBufferPointer { Conversion.fromFloat($0.baseAddress!, out.storage.pointer, dtype, count) }
        return out
    }
}
