/// A SentencePiece `precompiled_charsmap`: the normalization rules (NFKC and the like) compiled into a
/// darts-clone double-array trie over UTF-8 input, whose values point into a blob of NUL-terminated replacements.
///
/// Layout: a little-endian `UInt32` byte size of the trie, the trie's 32-bit units, then the replacement blob.
/// Each unit packs a label (low 8 bits, with bit 31 set on value units), a has-leaf flag (bit 8), and an offset
/// to its children (bits 10..31, shifted left by 8 when bit 9 is set); a value unit holds its value in bits 0..30.
struct PrecompiledCharsMap: Sendable {
    private let units: [UInt32]
    private let replacements: [UInt8]

    init(_ blob: [UInt8]) throws {
        guard blob.count > 4 else { throw TokenizerError("the precompiled charsmap is \(blob.count) bytes, too short to hold its trie") }
        let trieSize = Int(blob[0]) | Int(blob[1]) << 8 | Int(blob[2]) << 16 | Int(blob[3]) << 24
        guard trieSize + 4 <= blob.count else {
            throw TokenizerError("the precompiled charsmap's trie is \(trieSize) bytes, more than the \(blob.count - 4) bytes after its size")
        }
        units = stride(from: 4, to: 4 + trieSize - trieSize % 4, by: 4).map { k in
            UInt32(blob[k]) | UInt32(blob[k + 1]) << 8 | UInt32(blob[k + 2]) << 16 | UInt32(blob[k + 3]) << 24
        }
        replacements = Array(blob[(4 + trieSize)...])
    }

    /// The longest rule matching a prefix of `p[0..<n]`: how many bytes it consumes and the bytes it writes.
    /// A rule whose replacement offset lies outside the blob (a damaged file) writes nothing.
    func longestMatch(_ p: UnsafePointer<UInt8>, _ n: Int) -> (length: Int, replacement: ArraySlice<UInt8>)? {
        guard !units.isEmpty else { return nil }
        var best: (length: Int, value: Int)?
        var node = Int(Self.offset(units[0]))
        for i in 0..<n {
            node ^= Int(p[i])
            guard node < units.count else { break }
            let unit = units[node]
            guard Self.label(unit) == UInt32(p[i]) else { break }
            node ^= Int(Self.offset(unit))
            if Self.hasLeaf(unit) {
                guard node < units.count else { break }
                best = (i + 1, Int(units[node] & 0x7FFF_FFFF))
            }
        }
        guard let best else { return nil }
        guard best.value < replacements.count else { return (best.length, []) }
        let end = replacements[best.value...].firstIndex(of: 0) ?? replacements.count
        return (best.length, replacements[best.value..<end])
    }

    @inline(__always) private static func hasLeaf(_ unit: UInt32) -> Bool { (unit >> 8) & 1 == 1 }
    @inline(__always) private static func label(_ unit: UInt32) -> UInt32 { unit & (1 << 31 | 0xFF) }
    @inline(__always) private static func offset(_ unit: UInt32) -> UInt32 { (unit >> 10) << ((unit & (1 << 9)) >> 6) }
}
