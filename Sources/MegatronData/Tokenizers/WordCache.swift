/// A small direct-mapped cache from short pieces (up to 16 bytes) to their merged ids, so a word that recurs in
/// a text is merged once. Fixed-size arrays, no allocation per lookup; a colliding piece simply replaces the slot.
struct WordCache {
    static let maxBytes = 16
    static let maxIds = 8

    private let mask: Int
    private var keyLengths: [UInt8]
    private var keys: [UInt8]
    private var idCounts: [UInt8]
    private var ids: [Int32]

    /// Sized to the text (one slot per ~8 bytes, 64 to 4,096 slots) so that short texts pay little to set it up.
    init(textBytes: Int) {
        var slots = 64
        while slots < 4096 && slots * 8 < textBytes { slots *= 2 }
        mask = slots - 1
        keyLengths = [UInt8](repeating: 0, count: slots)
        keys = [UInt8](repeating: 0, count: slots * WordCache.maxBytes)
        idCounts = [UInt8](repeating: 0, count: slots)
        ids = [Int32](repeating: 0, count: slots * WordCache.maxIds)
    }

    @inline(__always)
    private func slot(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for k in 0..<n { h = (h ^ UInt64(p[k])) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 32)) & mask
    }

    /// Appends the cached ids of the piece plus `offset` to `out`; false when the piece is not cached.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, offset: Int, into out: inout [Int]) -> Bool {
        guard n <= WordCache.maxBytes else { return false }
        let s = slot(p, n)
        guard Int(keyLengths[s]) == n, idCounts[s] > 0 else { return false }
        let base = s * WordCache.maxBytes
        for k in 0..<n where keys[base + k] != p[k] { return false }
        let idBase = s * WordCache.maxIds
        for k in 0..<Int(idCounts[s]) { out.append(Int(ids[idBase + k]) + offset) }
        return true
    }

    /// Remembers the ids of a piece, if both fit.
    @inline(__always)
    mutating func store(_ p: UnsafePointer<UInt8>, _ n: Int, _ symbols: [Int32]) {
        guard n <= WordCache.maxBytes, symbols.count <= WordCache.maxIds, !symbols.isEmpty else { return }
        let s = slot(p, n)
        keyLengths[s] = UInt8(n)
        let base = s * WordCache.maxBytes
        for k in 0..<n { keys[base + k] = p[k] }
        idCounts[s] = UInt8(symbols.count)
        let idBase = s * WordCache.maxIds
        for k in 0..<symbols.count { ids[idBase + k] = symbols[k] }
    }
}
