/// Byte-pair merging for long pieces (a run of CJK letters, a long number in GPT-2) in O(n log n): a linked list
/// of symbols and a min-heap of candidate pairs keyed by `(rank, position)`, so the leftmost lowest-ranked pair
/// still merges first. Entries made stale by earlier merges are recognized when popped and skipped.
struct LongPieceMerge {
    /// Pieces with more symbols than this use the heap; shorter ones the simple quadratic scan.
    static let threshold = 48

    static func run(_ symbols: inout [Int32], _ merges: PairMergeTable) {
        let n = symbols.count
        var next = Array(1...n)
        var previous = Array(-1..<(n - 1))
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap<UInt64>()
        for k in 0..<(n - 1) { push(k, symbols, next, merges, &heap) }
        while let top = heap.pop() {
            let position = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            guard alive[position], next[position] >= 0 else { continue }
            let right = next[position]
            let merged = merges.lookup(symbols[position], symbols[right])
            guard merged != PairMergeTable.none, merged >> 32 == rank else { continue }
            symbols[position] = Int32(truncatingIfNeeded: merged & 0xFFFF_FFFF)
            alive[right] = false
            next[position] = next[right]
            if next[right] >= 0 { previous[next[right]] = position }
            if previous[position] >= 0 { push(previous[position], symbols, next, merges, &heap) }
            push(position, symbols, next, merges, &heap)
        }
        var k = 0
        var out = 0
        while k >= 0 {
            symbols[out] = symbols[k]
            out += 1
            k = next[k]
        }
        symbols.removeLast(n - out)
    }

    @inline(__always)
    private static func push(
        _ position: Int, _ symbols: [Int32], _ next: [Int], _ merges: PairMergeTable, _ heap: inout MinHeap<UInt64>
    ) {
        guard next[position] >= 0 else { return }
        let merged = merges.lookup(symbols[position], symbols[next[position]])
        if merged != PairMergeTable.none { heap.push((merged >> 32) << 32 | UInt64(position)) }
    }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    mutating func push(_ value: Element) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if items[parent] <= items[child] { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return top }
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            if left >= items.count { break }
            let right = left + 1
            let smaller = right < items.count && items[right] < items[left] ? right : left
            if items[parent] <= items[smaller] { break }
            items.swapAt(parent, smaller)
            parent = smaller
        }
        return top
    }
}
