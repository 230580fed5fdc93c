/// The encode and decode flow shared by `HuggingFaceTokenizer` and `GPT2BPETokenizer`: added tokens are cut out,
/// each stretch between them is normalized, pre-tokenized and merged, and the post-processor's ids go around.
struct BPETokenizerCore: Sendable {
    let addedTokens: SpecialTokenMatcher
    let normalizers: [Normalizer]
    let preTokenizer: PreTokenizer
    let model: BPEModel
    /// Ids the post-processor puts before and after a single sequence (`TemplateProcessing`).
    let prefixIds: [Int]
    let suffixIds: [Int]
    /// Token strings by id, as the decoder sees them (nil for ids the files do not define).
    let tokenStrings: [String?]
    let decoder: [DecoderStep]

    func encode(_ text: String) -> [Int] {
        var out = prefixIds
        out.reserveCapacity(text.utf8.count / 3)
        var scratch = BPEScratch(textBytes: text.utf8.count)
        var isFirst = true
        text.withUTF8Buffer { bytes in
            addedTokens.segment(
                bytes,
                ordinary: { range in
                    encodeSegment(bytes, range, isFirst: isFirst, into: &out, scratch: &scratch)
                    isFirst = false
                },
                special: { id in
                    out.append(id)
                    isFirst = false
                })
        }
        out += suffixIds
        return out
    }

    private func encodeSegment(
        _ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, isFirst: Bool, into out: inout [Int],
        scratch: inout BPEScratch
    ) {
        if normalizers.isEmpty && preTokenizer.onlySplits {
            preTokenizer.forEachPiece(bytes, range) { piece in
                model.encode(bytes.baseAddress! + piece.lowerBound, piece.count, offset: 0, into: &out, scratch: &scratch)
            }
            return
        }
        var segment = Array(bytes[range])
        for normalizer in normalizers { segment = normalizer.apply(segment) }
        segment = preTokenizer.rewrite(segment, isFirst: isFirst)
        segment.withUnsafeBufferPointer { rewritten in
            preTokenizer.forEachPiece(rewritten, 0..<rewritten.count) { piece in
                model.encode(
                    rewritten.baseAddress! + piece.lowerBound, piece.count, offset: 0, into: &out, scratch: &scratch)
            }
        }
    }

    /// The text of `ids` through the decoder steps; ids the vocabulary lacks are skipped.
    func decode(_ ids: [Int]) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids where id >= 0 && id < tokenStrings.count {
            if let token = tokenStrings[id] { tokens.append(token) }
        }
        for step in decoder { tokens = step.apply(tokens) }
        return tokens.joined()
    }
}
