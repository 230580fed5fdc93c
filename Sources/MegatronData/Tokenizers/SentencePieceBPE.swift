/// SentencePiece's BPE encoder (`bpe::Model::Encode`): the normalized text starts as one symbol per character
/// (a user-defined symbol is one symbol that never merges), and the adjacent pair whose concatenation is the
/// highest-scoring piece merges first, the leftmost among equals, until no pair is a piece. A merged piece of type
/// UNUSED is split back into the two symbols it was last made of.
///
/// Symbols are a linked list over the text, so a pair's concatenation is always one run of the text's bytes;
/// candidate pairs wait in a min-heap keyed by (score, left position), and an entry made stale by an earlier
/// merge is recognized when popped, as SentencePiece recognizes it: the run from its left symbol through that
/// symbol's right neighbour is no longer the length it was (each merge that touches a pair lengthens it).
struct SentencePieceBPE: Sendable {
    let vocabulary: SentencePieceVocabulary
    private let hasUnused: Bool

    init(_ vocabulary: SentencePieceVocabulary) {
        self.vocabulary = vocabulary
        hasUnused = vocabulary.types.contains(.unused)
    }

    /// Appends the pieces of `text` (normalized) to `out`.
    func encode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [PieceSpan]) {
        guard let p = text.baseAddress, !text.isEmpty else { return }
        var symbols = Symbols(text: p, count: text.count, userDefined: vocabulary.userDefined)
        var heap = MinHeap<Candidate>()
        var lastSplit: [[UInt8]: Int] = [:]
        for left in 0..<symbols.count - 1 { push(left, &symbols, &heap, &lastSplit) }
        while let top = heap.pop() {
            let left = Int(top.key & 0xFFFF_FFFF)
            guard symbols.alive[left], symbols.next[left] >= 0,
                symbols.end(symbols.next[left]) - symbols.start[left] == top.length
            else { continue }
            symbols.merge(left)
            if symbols.previous[left] >= 0 { push(symbols.previous[left], &symbols, &heap, &lastSplit) }
            push(left, &symbols, &heap, &lastSplit)
        }
        var k = 0
        while k >= 0 {
            resegment(symbols.start[k], symbols.end(k), p, lastSplit, into: &out)
            k = symbols.next[k]
        }
    }

    /// A pair that may merge: `key` sorts higher scores first, then the left symbol's index (its low 32 bits);
    /// `length` is the merged piece's byte length.
    private struct Candidate: Comparable {
        let key: UInt64
        let length: Int
        static func < (a: Candidate, b: Candidate) -> Bool { a.key < b.key }
    }

    /// Queues merging symbol `left` with its right neighbour, when the two make a piece.
    private func push(_ left: Int, _ symbols: inout Symbols, _ heap: inout MinHeap<Candidate>, _ lastSplit: inout [[UInt8]: Int]) {
        let right = symbols.next[left]
        guard right >= 0, !symbols.frozen[left], !symbols.frozen[right] else { return }
        let start = symbols.start[left]
        let length = symbols.end(right) - start
        guard let id = vocabulary.ordinary.id(symbols.text + start, length).map(Int.init) else { return }
        heap.push(Candidate(key: UInt64(Self.descendingKey(vocabulary.scores[id])) << 32 | UInt64(left), length: length))
        if hasUnused && vocabulary.types[id] == .unused {
            lastSplit[Array(UnsafeBufferPointer(start: symbols.text + start, count: length))] = symbols.end(left) - start
        }
    }

    /// The piece `text[start..<end]`, split again while it is an UNUSED piece that merging made.
    private func resegment(
        _ start: Int, _ end: Int, _ text: UnsafePointer<UInt8>, _ lastSplit: [[UInt8]: Int], into out: inout [PieceSpan]
    ) {
        let id = vocabulary.id(text + start, end - start)
        if hasUnused && vocabulary.types[id] == .unused,
            let split = lastSplit[Array(UnsafeBufferPointer(start: text + start, count: end - start))]
        {
            resegment(start, start + split, text, lastSplit, into: &out)
            resegment(start + split, end, text, lastSplit, into: &out)
            return
        }
        out.append(PieceSpan(start: start, end: end, id: id))
    }

    /// A key that sorts higher scores first; -0 and +0 are one score, as C++ compares them.
    @inline(__always)
    static func descendingKey(_ score: Float) -> UInt32 {
        let bits = (score == 0 ? Float(0) : score).bitPattern
        let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return ~ascending
    }

    /// The symbols of a text as a doubly linked list of runs; symbol `k` starts at byte `start[k]`.
    private struct Symbols {
        let text: UnsafePointer<UInt8>
        let length: Int
        var start: [Int] = []
        var next: [Int] = []
        var previous: [Int] = []
        var frozen: [Bool] = []
        var alive: [Bool] = []
        var count: Int { start.count }

        init(text: UnsafePointer<UInt8>, count n: Int, userDefined: PieceTrie?) {
            self.text = text
            length = n
            start.reserveCapacity(n)
            var i = 0
            while i < n {
                let user = userDefined?.longestPrefix(text + i, n - i) ?? 0
                start.append(i)
                frozen.append(user > 0)
                i += user > 0 ? user : min(SentencePieceUTF8.charLength(text[i]), n - i)
            }
            next = Array(1...start.count)
            next[start.count - 1] = -1
            previous = Array(-1..<(start.count - 1))
            alive = [Bool](repeating: true, count: start.count)
        }

        @inline(__always)
        func end(_ k: Int) -> Int { next[k] >= 0 ? start[next[k]] : length }

        /// Joins symbol `left` and its right neighbour.
        mutating func merge(_ left: Int) {
            let right = next[left]
            alive[right] = false
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
        }
    }
}

/// A piece of an encoding: the bytes `start..<end` of the normalized text and the piece's id.
struct PieceSpan: Equatable {
    var start: Int
    var end: Int
    var id: Int
}
