/// How a segment is cut into the pieces the model sees.
struct PreTokenizer: Sendable {
    enum PrependScheme: Sendable { case always, first, never }
    enum Split: Sendable {
        case pattern(PreTokenizerPattern)
        /// Metaspace's split: a new piece starts at each replacement character.
        case before([UInt8])
    }

    /// ByteLevel's `add_prefix_space`: a space before a segment that does not start with one.
    var addPrefixSpace = false
    /// Metaspace: spaces become `replacement`, which is also prepended per `prepend`.
    var metaspace: (replacement: [UInt8], prepend: PrependScheme)? = nil
    var splits: [Split] = []

    /// True when the pre-tokenizer only splits, so the text's own bytes can be used without a copy.
    var onlySplits: Bool { !addPrefixSpace && metaspace == nil }

    /// The bytes after the prefix-space and metaspace rewrites; `isFirst` is whether the segment starts the text.
    func rewrite(_ bytes: [UInt8], isFirst: Bool) -> [UInt8] {
        var bytes = bytes
        if addPrefixSpace && bytes.first != 0x20 { bytes.insert(0x20, at: 0) }
        if let (replacement, prepend) = metaspace {
            bytes = replacing(bytes, [0x20], replacement)
            let wanted = prepend == .always || (prepend == .first && isFirst)
            if wanted && !bytes.starts(with: replacement) { bytes = replacement + bytes }
        }
        return bytes
    }

    /// Calls `body` with each piece of `bytes[range]`, applying the splits in order.
    func forEachPiece(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        split(bytes, range, level: 0, body)
    }

    private func split(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, level: Int, _ body: (Range<Int>) -> Void
    ) {
        guard level < splits.count else {
            if !range.isEmpty { body(range) }
            return
        }
        switch splits[level] {
        case .pattern(let pattern):
            if level == splits.count - 1 {
                pattern.split(bytes, range: range, body)
            } else {
                pattern.split(bytes, range: range) { split(bytes, $0, level: level + 1, body) }
            }
        case .before(let marker):
            var start = range.lowerBound
            var i = range.lowerBound + 1
            while i + marker.count <= range.upperBound {
                if bytes[i] == marker[0] && (0..<marker.count).allSatisfy({ bytes[i + $0] == marker[$0] }) {
                    split(bytes, start..<i, level: level + 1, body)
                    start = i
                    i += marker.count
                } else {
                    i += 1
                }
            }
            split(bytes, start..<range.upperBound, level: level + 1, body)
        }
    }
}
