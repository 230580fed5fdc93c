/// A map from byte sequences to token ids, looked up without allocating: keys live in one byte arena and the
/// table is open-addressed, so a lookup hashes the bytes in place and compares with the arena.
struct ByteSequenceTable: Sendable {
    private var arena: [UInt8] = []
    private var starts: [Int32] = [0]
    private var ids: [Int32] = []
    private var slots: [Int32] = []
    private var mask = 0

    var count: Int { ids.count }

    /// Builds the table; a later duplicate key replaces an earlier one's id.
    init(_ entries: [(bytes: [UInt8], id: Int)]) {
        var capacity = 16
        while capacity < entries.count * 2 { capacity *= 2 }
        slots = Array(repeating: -1, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(entries.reduce(0) { $0 + $1.bytes.count })
        for (bytes, id) in entries { insert(bytes, id: Int32(id)) }
    }

    private mutating func insert(_ bytes: [UInt8], id: Int32) {
        let found: Int? = bytes.withUnsafeBufferPointer { slotIndex($0.baseAddress, $0.count) }
        if let slot = found, slots[slot] >= 0 {
            ids[Int(slots[slot])] = id
            return
        }
        let entry = Int32(ids.count)
        arena.append(contentsOf: bytes)
        starts.append(Int32(arena.count))
        ids.append(id)
        slots[found!] = entry
    }

    @inline(__always)
    private static func hash(_ p: UnsafePointer<UInt8>?, _ n: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for k in 0..<n { h = (h ^ UInt64(p![k])) &* 0x100_0000_01b3 }
        return h ^ (h >> 29)
    }

    /// The slot holding `bytes`, or the empty slot where it would go.
    @inline(__always)
    private func slotIndex(_ p: UnsafePointer<UInt8>?, _ n: Int) -> Int? {
        var slot = Int(truncatingIfNeeded: ByteSequenceTable.hash(p, n)) & mask
        return arena.withUnsafeBufferPointer { keys -> Int? in
            while true {
                let entry = Int(slots[slot])
                if entry < 0 { return slot }
                let start = Int(starts[entry])
                let length = Int(starts[entry + 1]) - start
                if length == n && (n == 0 || memcmpEqual(keys.baseAddress! + start, p!, n)) { return slot }
                slot = (slot + 1) & mask
            }
        }
    }

    /// The id of `bytes[0..<count]`, if it is a key.
    @inline(__always)
    func id(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int32? {
        guard let slot = slotIndex(p, n) else { return nil }
        let entry = slots[slot]
        return entry >= 0 ? ids[Int(entry)] : nil
    }

    func id(_ bytes: [UInt8]) -> Int32? {
        bytes.withUnsafeBufferPointer { buffer in
            buffer.count == 0 ? nil : id(buffer.baseAddress!, buffer.count)
        }
    }
}

@inline(__always)
private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    for k in 0..<n where a[k] != b[k] { return false }
    return true
}
