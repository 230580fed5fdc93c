/// A byte-pair-encoding model: token bytes to ids, the merge table, and how a piece is first cut into symbols.
///
/// One model serves tiktoken files, GPT-2 vocab/merges files and `tokenizer.json` BPE models: all of them are
/// "start from small symbols, repeatedly merge the leftmost adjacent pair of lowest rank".
struct BPEModel: Sendable {
    /// How a piece becomes its first symbols.
    enum Alphabet: Sendable {
        /// One symbol per byte (GPT-2 byte-level, tiktoken).
        case bytes
        /// One symbol per Unicode scalar; scalars missing from the vocabulary become `<0xXX>` byte tokens
        /// (`byteFallback`) or the unknown token.
        case scalars(byteFallback: Bool, unknown: Int32?, fuseUnknown: Bool)
    }

    let tokens: ByteSequenceTable
    let merges: PairMergeTable
    let alphabet: Alphabet
    /// Take a piece that is itself a token as is, before merging (tiktoken; `ignore_merges` in tokenizer.json).
    let wholePieceFirst: Bool
    /// Id of each single byte (byte alphabet) or of each `<0xXX>` token (byte fallback), -1 where absent.
    let byteIds: [Int32]

    init(tokens: ByteSequenceTable, merges: PairMergeTable, alphabet: Alphabet, wholePieceFirst: Bool) {
        self.tokens = tokens
        self.merges = merges
        self.alphabet = alphabet
        self.wholePieceFirst = wholePieceFirst
        switch alphabet {
        case .bytes:
            byteIds = (0..<256).map { tokens.id([UInt8($0)]) ?? -1 }
        case .scalars:
            byteIds = (0..<256).map { b in
                tokens.id(Array(byteFallbackToken(b).utf8)) ?? -1
            }
        }
    }

    /// Appends the ids of `piece` (`n` bytes at `p`) plus `offset` to `out`, using and filling `scratch`.
    func encode(
        _ p: UnsafePointer<UInt8>, _ n: Int, offset: Int, into out: inout [Int], scratch: inout BPEScratch
    ) {
        if wholePieceFirst, let id = tokens.id(p, n) {
            out.append(Int(id) + offset)
            return
        }
        if scratch.cache.lookup(p, n, offset: offset, into: &out) { return }
        scratch.symbols.removeAll(keepingCapacity: true)
        startSymbols(p, n, &scratch.symbols)
        mergeAll(&scratch)
        scratch.cache.store(p, n, scratch.symbols)
        for s in scratch.symbols { out.append(Int(s) + offset) }
    }

    private func startSymbols(_ p: UnsafePointer<UInt8>, _ n: Int, _ symbols: inout [Int32]) {
        switch alphabet {
        case .bytes:
            for k in 0..<n where byteIds[Int(p[k])] >= 0 { symbols.append(byteIds[Int(p[k])]) }
        case .scalars(let byteFallback, let unknown, let fuseUnknown):
            var i = 0
            var lastWasUnknown = false
            while i < n {
                let length = utf8Length(p[i])
                let end = min(i + length, n)
                if let id = tokens.id(p + i, end - i) {
                    symbols.append(id)
                    lastWasUnknown = false
                } else if byteFallback, (i..<end).allSatisfy({ byteIds[Int(p[$0])] >= 0 }) {
                    for k in i..<end { symbols.append(byteIds[Int(p[k])]) }
                    lastWasUnknown = false
                } else if let unknown {
                    if !(fuseUnknown && lastWasUnknown) { symbols.append(unknown) }
                    lastWasUnknown = true
                }
                i = end
            }
        }
    }

    /// Merges the leftmost lowest-ranked adjacent pair until no pair merges.
    private func mergeAll(_ scratch: inout BPEScratch) {
        let count = scratch.symbols.count
        guard count > 1 else { return }
        if count > LongPieceMerge.threshold {
            LongPieceMerge.run(&scratch.symbols, merges)
            return
        }
        scratch.ranks.removeAll(keepingCapacity: true)
        for k in 0..<(count - 1) { scratch.ranks.append(merges.lookup(scratch.symbols[k], scratch.symbols[k + 1])) }
        while true {
            var best = PairMergeTable.none
            var at = -1
            for k in 0..<scratch.ranks.count where scratch.ranks[k] < best {
                best = scratch.ranks[k]
                at = k
            }
            if at < 0 { return }
            scratch.symbols[at] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
            scratch.symbols.remove(at: at + 1)
            scratch.ranks.remove(at: at)
            if at > 0 {
                scratch.ranks[at - 1] = merges.lookup(scratch.symbols[at - 1], scratch.symbols[at])
            }
            if at < scratch.ranks.count {
                scratch.ranks[at] = merges.lookup(scratch.symbols[at], scratch.symbols[at + 1])
            }
        }
    }
}

/// Reusable buffers for `BPEModel.encode`, so that merging a piece allocates nothing, and the cache of pieces
/// already merged during one `encode` call (per call, so tokenizers stay immutable and shareable across threads).
struct BPEScratch {
    var symbols: [Int32] = []
    var ranks: [UInt64] = []
    var cache: WordCache
    init(textBytes: Int) {
        cache = WordCache(textBytes: textBytes)
        symbols.reserveCapacity(64)
        ranks.reserveCapacity(64)
    }
}

/// Length of the UTF-8 sequence that starts with `lead`.
@inline(__always)
func utf8Length(_ lead: UInt8) -> Int {
    lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
}

/// `<0xAB>`: the byte-fallback token of one byte.
func byteFallbackToken(_ byte: Int) -> String {
    let hex = Array("0123456789ABCDEF")
    return "<0x" + String(hex[byte >> 4]) + String(hex[byte & 15]) + ">"
}
