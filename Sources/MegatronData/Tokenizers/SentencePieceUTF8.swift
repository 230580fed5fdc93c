/// UTF-8 as SentencePiece reads it (`string_util::OneCharLen` and `DecodeUTF8`), which differs from Swift's own
/// decoding on malformed bytes: a stray continuation byte counts as one character, and each byte of a malformed
/// sequence becomes its own U+FFFD.
enum SentencePieceUTF8 {
    static let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// The byte length of the character that starts with `lead`, by its high four bits alone.
    @inline(__always)
    static func charLength(_ lead: UInt8) -> Int {
        switch lead >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// The length of the well-formed character at the start of `bytes[start...]` (shortest form, no surrogate,
    /// at most U+10FFFF), or nil when it is malformed.
    static func validLength(_ bytes: [UInt8], at start: Int) -> Int? {
        let lead = bytes[start]
        if lead < 0x80 { return 1 }
        func trail(_ k: Int) -> UInt32? {
            start + k < bytes.count && bytes[start + k] & 0xC0 == 0x80 ? UInt32(bytes[start + k] & 0x3F) : nil
        }
        let length: Int
        let minimum: UInt32
        var scalar: UInt32
        switch lead {
        case _ where lead & 0xE0 == 0xC0: (length, minimum, scalar) = (2, 0x80, UInt32(lead & 0x1F))
        case _ where lead & 0xF0 == 0xE0: (length, minimum, scalar) = (3, 0x800, UInt32(lead & 0x0F))
        case _ where lead & 0xF8 == 0xF0: (length, minimum, scalar) = (4, 0x10000, UInt32(lead & 0x07))
        default: return nil
        }
        for k in 1..<length {
            guard let bits = trail(k) else { return nil }
            scalar = scalar << 6 | bits
        }
        let valid = scalar >= minimum && (scalar < 0xD800 || (scalar >= 0xE000 && scalar <= 0x10FFFF))
        return valid ? length : nil
    }
}
