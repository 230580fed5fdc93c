import MegatronTensor

/// Element-wise reduction of equal-sized host buffers, always in rank order so that every rank computes
/// bit-identical results. Floating-point types accumulate in fp32 (16-bit and fp8 types are rounded once, at
/// the end); integer types accumulate in Int64, and `average` divides with truncation as NCCL's ncclAvg does.
/// `scaledSum` multiplies each rank's values by its factor before adding them, as NCCL's PreMulSum.
enum HostReduction {
    static func reduce(_ buffers: [HostBuffer], op: ReduceOp, operation: String) throws -> [UInt8] {
        let dtype = buffers[0].dtype
        let count = buffers[0].count
        switch dtype {
        case .int32, .int64:
            if case .scaledSum = op { throw CommunicatorError(operation, "\(op) needs a floating-point tensor, got \(dtype)") }
            var accumulator = readInts(buffers[0])
            for buffer in buffers.dropFirst() {
                let values = readInts(buffer)
                for i in 0..<count { accumulator[i] = combine(accumulator[i], values[i], op) }
            }
            if op == .average { for i in 0..<count { accumulator[i] /= Int64(buffers.count) } }
            return writeInts(accumulator, dtype: dtype)
        case .bool:
            throw CommunicatorError(operation, "cannot reduce bool tensors (cast to int32 first)")
        default:
            let factor: Float? = if case .scaledSum(let factor) = op { factor } else { nil }
            let scaled = { (buffer: HostBuffer) in factor.map { f in readFloats(buffer).map { $0 * f } } ?? readFloats(buffer) }
            var accumulator = scaled(buffers[0])
            for buffer in buffers.dropFirst() {
                let values = scaled(buffer)
                for i in 0..<count { accumulator[i] = combine(accumulator[i], values[i], op) }
            }
            if op == .average { for i in 0..<count { accumulator[i] /= Float(buffers.count) } }
            return writeFloats(accumulator, dtype: dtype)
        }
    }

    private static func combine<T: Comparable & AdditiveArithmetic>(_ a: T, _ b: T, _ op: ReduceOp) -> T {
        switch op {
        case .sum, .average, .scaledSum: a + b
        case .max: Swift.max(a, b)
        }
    }

    static func readFloats(_ buffer: HostBuffer) -> [Float] {
        buffer.bytes.withUnsafeBytes { raw in
            switch buffer.dtype {
            case .float32: return Array(raw.bindMemory(to: Float.self))
            case .bfloat16: return raw.bindMemory(to: UInt16.self).map { FloatFormats.float(bfloat16Bits: $0) }
            case .float16: return raw.bindMemory(to: UInt16.self).map { FloatFormats.float(float16Bits: $0) }
            case .float8E4M3: return raw.map { FloatFormats.float(float8E4M3Bits: $0) }
            case .float8E5M2: return raw.map { FloatFormats.float(float8E5M2Bits: $0) }
            case .int32, .int64, .bool: preconditionFailure("readFloats on \(buffer.dtype)")
            }
        }
    }

    static func writeFloats(_ values: [Float], dtype: DType) -> [UInt8] {
        switch dtype {
        case .float32: return values.withUnsafeBytes { Array($0) }
        case .bfloat16: return values.map(FloatFormats.bfloat16Bits).withUnsafeBytes { Array($0) }
        case .float16: return values.map(FloatFormats.float16Bits).withUnsafeBytes { Array($0) }
        case .float8E4M3: return values.map(FloatFormats.float8E4M3Bits)
        case .float8E5M2: return values.map(FloatFormats.float8E5M2Bits)
        case .int32, .int64, .bool: preconditionFailure("writeFloats to \(dtype)")
        }
    }

    static func readInts(_ buffer: HostBuffer) -> [Int64] {
        buffer.bytes.withUnsafeBytes { raw in
            buffer.dtype == .int32 ? raw.bindMemory(to: Int32.self).map(Int64.init) : Array(raw.bindMemory(to: Int64.self))
        }
    }

    static func writeInts(_ values: [Int64], dtype: DType) -> [UInt8] {
        dtype == .int32
            ? values.map { Int32(truncatingIfNeeded: $0) }.withUnsafeBytes { Array($0) }
            : values.withUnsafeBytes { Array($0) }
    }
}
