/// SentencePiece's normalizer (`normalizer::Normalizer::Normalize`): the model's character rules
/// (`precompiled_charsmap`), then spaces written as `▁`, a dummy `▁` before the text (or after it, when the model
/// treats whitespace as a suffix), and runs of spaces collapsed and trimmed when `remove_extra_whitespaces` is on.
/// User-defined symbols pass through untouched.
struct SentencePieceNormalizer: Sendable {
    static let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]

    let charsMap: PrecompiledCharsMap?
    let userDefined: PieceTrie?
    let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool
    let treatWhitespaceAsSuffix: Bool

    init(_ spec: SentencePieceModelProto.NormalizerSpec, treatWhitespaceAsSuffix: Bool, userDefined: PieceTrie?) throws {
        charsMap = spec.precompiledCharsmap.isEmpty ? nil : try PrecompiledCharsMap(spec.precompiledCharsmap)
        self.userDefined = userDefined
        addDummyPrefix = spec.addDummyPrefix
        removeExtraWhitespaces = spec.removeExtraWhitespaces
        escapeWhitespaces = spec.escapeWhitespaces
        self.treatWhitespaceAsSuffix = treatWhitespaceAsSuffix
    }

    /// The normalized bytes of `text`.
    func normalize(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard let base = text.baseAddress, !text.isEmpty else { return [] }
        let n = text.count
        var i = 0
        if removeExtraWhitespaces {
            while i < n {
                let (consumed, replacement) = prefix(base + i, n - i)
                guard replacement.map({ $0.elementsEqual([0x20]) }) ?? (consumed == 1 && base[i] == 0x20) else { break }
                i += consumed
            }
        }
        guard i < n else { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(n + n / 2 + 3)
        let space: [UInt8] = escapeWhitespaces ? Self.spaceSymbol : [0x20]
        if !treatWhitespaceAsSuffix && addDummyPrefix { out += space }
        var isPreviousSpace = removeExtraWhitespaces
        while i < n {
            let (consumed, replacement) = prefix(base + i, n - i)
            if let replacement {
                append(replacement, to: &out, isPreviousSpace: &isPreviousSpace)
            } else {
                append(UnsafeBufferPointer(start: base + i, count: consumed), to: &out, isPreviousSpace: &isPreviousSpace)
            }
            i += consumed
            if !removeExtraWhitespaces { isPreviousSpace = false }
        }
        if removeExtraWhitespaces {
            while out.count >= space.count && out.suffix(space.count).elementsEqual(space) { out.removeLast(space.count) }
        }
        if treatWhitespaceAsSuffix && addDummyPrefix { out += space }
        return out
    }

    /// Appends one normalized character (or user-defined symbol), without its leading spaces after a space.
    @inline(__always)
    private func append<C: Collection>(_ piece: C, to out: inout [UInt8], isPreviousSpace: inout Bool) where C.Element == UInt8 {
        var sawByte = false
        var last: UInt8 = 0
        for byte in piece {
            if !sawByte && isPreviousSpace && byte == 0x20 { continue }
            sawByte = true
            last = byte
            if escapeWhitespaces && byte == 0x20 { out += Self.spaceSymbol } else { out.append(byte) }
        }
        if sawByte { isPreviousSpace = last == 0x20 }
    }

    /// How many input bytes the next normalization step consumes, and what it writes: nil means the consumed
    /// bytes themselves (a user-defined symbol, or a character no rule matches).
    @inline(__always)
    private func prefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> (Int, ArraySlice<UInt8>?) {
        if let userDefined {
            let length = userDefined.longestPrefix(p, n)
            if length > 0 { return (length, nil) }
        }
        if let charsMap, let match = charsMap.longestMatch(p, n) { return (match.length, match.replacement) }
        return (min(SentencePieceUTF8.charLength(p[0]), n), nil)
    }
}
