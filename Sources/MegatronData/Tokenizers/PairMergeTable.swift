/// BPE merges keyed on a pair of token ids: `(left, right) -> (rank, merged id)`, open-addressed over `UInt64`
/// keys so the merge loop does integer lookups only.
struct PairMergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let shift: UInt64
    private let mask: Int

    static let none = UInt64.max

    /// `merges[i] = (left, right, merged)` has rank `rank ?? i`; the first entry for a pair wins.
    init(_ merges: [(left: Int32, right: Int32, merged: Int32, rank: Int32)]) {
        var bits: UInt64 = 4
        while (1 << bits) < merges.count * 2 { bits += 1 }
        let capacity = 1 << Int(bits)
        keys = Array(repeating: 0, count: capacity)
        values = Array(repeating: PairMergeTable.none, count: capacity)
        shift = 64 - bits
        mask = capacity - 1
        for m in merges {
            let key = PairMergeTable.key(m.left, m.right)
            var slot = slotFor(key)
            while values[slot] != PairMergeTable.none && keys[slot] != key { slot = (slot + 1) & mask }
            if values[slot] == PairMergeTable.none {
                keys[slot] = key
                values[slot] = UInt64(UInt32(m.rank)) << 32 | UInt64(UInt32(m.merged))
            }
        }
    }

    @inline(__always)
    private static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    @inline(__always)
    private func slotFor(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// `rank << 32 | merged`, so comparing two results compares ranks; `none` when the pair does not merge.
    @inline(__always)
    func lookup(_ a: Int32, _ b: Int32) -> UInt64 {
        let key = PairMergeTable.key(a, b)
        var slot = slotFor(key)
        while true {
            let v = values[slot]
            if v == PairMergeTable.none || keys[slot] == key { return v }
            slot = (slot + 1) & mask
        }
    }
}
