/// The Unicode classes that the pre-tokenizer regexes test (`\p{L}`, `\p{N}`, `\s`, ...), as bits of one byte.
struct ScalarClass: OptionSet, Sendable {
    let rawValue: UInt8

    /// `\p{L}`.
    static let letter = ScalarClass(rawValue: 1)
    /// `\p{N}`.
    static let number = ScalarClass(rawValue: 2)
    /// `\s`: the Unicode White_Space property (Rust `regex` and Oniguruma agree on it).
    static let space = ScalarClass(rawValue: 4)
    /// `[\r\n]`.
    static let newline = ScalarClass(rawValue: 8)
    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`: the "upper" set of o200k-style patterns.
    static let upperish = ScalarClass(rawValue: 16)
    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`: the "lower" set of o200k-style patterns.
    static let lowerish = ScalarClass(rawValue: 32)

    /// `[^\s\p{L}\p{N}]`: punctuation, symbols, marks, controls.
    var isOther: Bool { isDisjoint(with: [.letter, .number, .space]) }

    /// The class of one scalar; ASCII through a table, the rest through the general category.
    @inline(__always)
    static func of(_ value: UInt32) -> ScalarClass {
        if value < 128 { return asciiTable[Int(value)] }
        return computed(value)
    }

    private static let asciiTable: [ScalarClass] = (0..<128).map { computed(UInt32($0)) }

    private static func computed(_ value: UInt32) -> ScalarClass {
        guard let scalar = Unicode.Scalar(value) else { return [] }
        var result: ScalarClass = []
        if scalar.properties.isWhitespace { result.insert(.space) }
        if value == 0x0A || value == 0x0D { result.insert(.newline) }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .titlecaseLetter:
            result.formUnion([.letter, .upperish])
        case .lowercaseLetter:
            result.formUnion([.letter, .lowerish])
        case .modifierLetter, .otherLetter:
            result.formUnion([.letter, .upperish, .lowerish])
        case .nonspacingMark, .spacingMark, .enclosingMark:
            result.formUnion([.upperish, .lowerish])
        case .decimalNumber, .letterNumber, .otherNumber:
            result.insert(.number)
        default:
            break
        }
        return result
    }
}

/// A read-only view of UTF-8 bytes that steps by Unicode scalar. The bytes come from a Swift `String`, so they are
/// valid UTF-8 and need no checks.
struct ScalarCursor {
    let base: UnsafePointer<UInt8>
    let end: Int

    /// The scalar starting at byte `i` (`i < end`) and the byte offset just after it.
    @inline(__always)
    func scalar(at i: Int) -> (value: UInt32, next: Int) {
        let b0 = UInt32(base[i])
        if b0 < 0x80 { return (b0, i + 1) }
        if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(base[i + 1] & 0x3F), i + 2) }
        if b0 < 0xF0 {
            return ((b0 & 0x0F) << 12 | UInt32(base[i + 1] & 0x3F) << 6 | UInt32(base[i + 2] & 0x3F), i + 3)
        }
        let v = (b0 & 0x07) << 18 | UInt32(base[i + 1] & 0x3F) << 12 | UInt32(base[i + 2] & 0x3F) << 6
            | UInt32(base[i + 3] & 0x3F)
        return (v, i + 4)
    }

    /// The class of the scalar at `i` and the offset after it; an empty class at the end.
    @inline(__always)
    func classAt(_ i: Int) -> (cls: ScalarClass, next: Int) {
        if i >= end { return ([], i) }
        let b0 = base[i]
        if b0 < 0x80 { return (ScalarClass.of(UInt32(b0)), i + 1) }
        let (v, n) = scalar(at: i)
        return (ScalarClass.of(v), n)
    }

    /// The end of the run of scalars from `i` whose class intersects `set`, stopping after `limit` scalars.
    @inline(__always)
    func run(from i: Int, _ set: ScalarClass, limit: Int = .max) -> Int {
        var j = i
        var count = 0
        while j < end && count < limit {
            let (c, n) = classAt(j)
            if c.isDisjoint(with: set) { break }
            j = n
            count += 1
        }
        return j
    }

    /// The end of the run of "other" scalars (`[^\s\p{L}\p{N}]`) from `i`.
    @inline(__always)
    func otherRun(from i: Int) -> Int {
        var j = i
        while j < end {
            let (c, n) = classAt(j)
            if !c.isOther { break }
            j = n
        }
        return j
    }
}
