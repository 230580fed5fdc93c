/// The element types of Megatron's `.bin` files, with the codes the `.idx` header stores (`class DType`).
public enum TokenDType: UInt8, Sendable, CaseIterable {
    case uint8 = 1, int8 = 2, int16 = 3, int32 = 4, int64 = 5, float64 = 6, float32 = 7, uint16 = 8

    /// Bytes per element.
    public var itemSize: Int {
        switch self {
        case .uint8, .int8: return 1
        case .int16, .uint16: return 2
        case .int32, .float32: return 4
        case .int64, .float64: return 8
        }
    }

    /// Megatron's `DType.optimal_dtype`: `uint16` for vocabularies below 65,500 tokens, else `int32`.
    public static func optimal(vocabSize: Int) -> TokenDType {
        vocabSize < 65_500 ? .uint16 : .int32
    }

    /// Whether token ids are stored in this type; floating types are valid in files but not for tokens.
    var holdsTokens: Bool { self != .float32 && self != .float64 }
}
