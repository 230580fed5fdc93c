/// A byte trie of pieces and their ids, for visiting every piece that starts at one position of a text: the
/// unigram model's lattice, and the longest user-defined symbol in SentencePiece's normalizer and BPE.
///
/// Node `k`'s children are `labels` / `targets[firstEdge[k]..<firstEdge[k + 1]]`, sorted by label; the root's
/// children are also in a 256-entry table, as nearly every walk starts there.
struct PieceTrie: Sendable {
    private var firstEdge: [Int32] = []
    private var labels: [UInt8] = []
    private var targets: [Int32] = []
    /// The id of the piece ending at each node, -1 where none does.
    private var values: [Int32] = []
    private var rootChildren = [Int32](repeating: -1, count: 256)

    /// The trie of `entries`; a later duplicate replaces an earlier one's id. Empty pieces are ignored.
    init(_ entries: [(bytes: [UInt8], id: Int)]) {
        var children: [[UInt8: Int32]] = [[:]]
        var ids: [Int32] = [-1]
        for (bytes, id) in entries where !bytes.isEmpty {
            var node = 0
            for byte in bytes {
                if let child = children[node][byte] {
                    node = Int(child)
                } else {
                    children[node][byte] = Int32(children.count)
                    node = children.count
                    children.append([:])
                    ids.append(-1)
                }
            }
            ids[node] = Int32(id)
        }
        values = ids
        for edges in children {
            firstEdge.append(Int32(labels.count))
            for (label, target) in edges.sorted(by: { $0.key < $1.key }) {
                labels.append(label)
                targets.append(target)
            }
        }
        firstEdge.append(Int32(labels.count))
        for (label, target) in children[0] { rootChildren[Int(label)] = target }
    }

    @inline(__always)
    private func child(_ node: Int, _ byte: UInt8) -> Int {
        if node == 0 { return Int(rootChildren[Int(byte)]) }
        var k = Int(firstEdge[node])
        let end = Int(firstEdge[node + 1])
        while k < end {
            if labels[k] == byte { return Int(targets[k]) }
            if labels[k] > byte { return -1 }
            k += 1
        }
        return -1
    }

    /// Calls `body(length, id)` for each piece that is a prefix of `p[0..<n]`, shortest first.
    @inline(__always)
    func forEachPrefix(_ p: UnsafePointer<UInt8>, _ n: Int, _ body: (Int, Int) -> Void) {
        var node = 0
        for i in 0..<n {
            node = child(node, p[i])
            if node < 0 { return }
            if values[node] >= 0 { body(i + 1, Int(values[node])) }
        }
    }

    /// The byte length of the longest piece that is a prefix of `p[0..<n]`, 0 when none is.
    func longestPrefix(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var longest = 0
        forEachPrefix(p, n) { length, _ in longest = length }
        return longest
    }
}
