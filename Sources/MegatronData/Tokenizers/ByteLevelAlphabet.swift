/// GPT-2's byte-to-unicode map: the 188 printable Latin-1 bytes stand for themselves, the other 68 bytes map to
/// U+0100 upward in byte order. Byte-level vocabularies spell their tokens in these characters.
enum ByteLevelAlphabet {
    /// `character[b]` spells byte `b`.
    static let characters: [Unicode.Scalar] = {
        var result = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                result[b] = Unicode.Scalar(UInt32(b))!
            } else {
                result[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return result
    }()

    private static let byteOf: [UInt32: UInt8] = Dictionary(
        uniqueKeysWithValues: characters.enumerated().map { ($0.element.value, UInt8($0.offset)) })

    /// The bytes a byte-level token string stands for, or nil if it has a character outside the alphabet.
    static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard let b = byteOf[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    /// The byte-level spelling of `bytes`.
    static func string(of bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(characters[Int(b)]) }
        return String(s)
    }
}
