/// Finds special (added) tokens in text: at the leftmost position where one starts, the longest one wins.
///
/// A byte trie, so that Megatron's 1,000 TikToken specials (all starting with `<`) cost one walk per `<`.
struct SpecialTokenMatcher: Sendable {
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]
    private var startsToken = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { terminal.count == 1 }

    init(_ tokens: [(text: String, id: Int)]) {
        for (text, id) in tokens where !text.isEmpty { insert(Array(text.utf8), Int32(id)) }
    }

    private mutating func insert(_ bytes: [UInt8], _ id: Int32) {
        startsToken[Int(bytes[0])] = true
        var node = 0
        for b in bytes {
            if let next = children[node][b] {
                node = Int(next)
            } else {
                children.append([:])
                terminal.append(-1)
                children[node][b] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        terminal[node] = id
    }

    /// The longest token starting at byte `i`: its id and end.
    @inline(__always)
    func match(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (id: Int, end: Int)? {
        guard startsToken[Int(bytes[i])] else { return nil }
        var node = 0
        var best: (Int, Int)? = nil
        var j = i
        while j < bytes.count, let next = children[node][bytes[j]] {
            node = Int(next)
            j += 1
            if terminal[node] >= 0 { best = (Int(terminal[node]), j) }
        }
        return best
    }

    /// Walks `bytes`, calling `ordinary` for each stretch between special tokens and `special` for each token.
    func segment(
        _ bytes: UnsafeBufferPointer<UInt8>, ordinary: (Range<Int>) -> Void, special: (Int) -> Void
    ) {
        var start = 0
        var i = 0
        if !isEmpty {
            while i < bytes.count {
                if let (id, end) = match(bytes, at: i) {
                    if start < i { ordinary(start..<i) }
                    special(id)
                    start = end
                    i = end
                } else {
                    i += 1
                }
            }
        }
        if start < bytes.count { ordinary(start..<bytes.count) }
    }
}

extension String {
    /// Runs `body` over the string's UTF-8 bytes without copying when the string is native.
    func withUTF8Buffer<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let result = utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(utf8).withUnsafeBufferPointer(body)
    }
}
