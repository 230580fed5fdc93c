/// Element types a tensor can hold.
///
/// Floating-point math on the CPU runs in fp32 whatever the storage type; `bfloat16`, `float16` and the
/// fp8 formats are storage formats there, converted with round-to-nearest-even.
public enum DType: String, Sendable, CaseIterable, CustomStringConvertible, Codable {
    case float32, bfloat16, float16, float8E4M3, float8E5M2, int32, int64, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: 4
        case .bfloat16, .float16: 2
        case .float8E4M3, .float8E5M2, .bool: 1
        case .int64: 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .bfloat16, .float16, .float8E4M3, .float8E5M2: true
        case .int32, .int64, .bool: false
        }
    }

    public var description: String { rawValue }
}
