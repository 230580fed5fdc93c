/// SentencePiece's unigram encoder (`unigram::Model::EncodeOptimized`): the Viterbi path through every way of
/// cutting the normalized text into pieces, scoring a path by the sum of its pieces' scores (log probabilities).
/// A character no piece starts with is the unknown piece, scored 10 below the lowest piece; a user-defined symbol
/// scores its byte length times the highest score, less 0.1, so that it always wins.
///
/// Scores are summed and compared in `Float`, the earlier start winning a tie, as SentencePiece does: paths of
/// equal sums differ only by rounding, so any other arithmetic picks differently among them.
struct SentencePieceUnigram: Sendable {
    let vocabulary: SentencePieceVocabulary
    private let trie: PieceTrie
    private let unknownScore: Float
    /// The highest NORMAL score, but at least the smallest positive float, as SentencePiece starts from FLT_MIN.
    private let maxScore: Float

    init(_ vocabulary: SentencePieceVocabulary) {
        self.vocabulary = vocabulary
        let ordinary = vocabulary.pieces.indices.filter { [.normal, .userDefined, .unused].contains(vocabulary.types[$0]) }
        trie = PieceTrie(ordinary.map { (vocabulary.pieces[$0], $0) })
        let normalScores = vocabulary.pieces.indices.filter { vocabulary.types[$0] == .normal }.map { vocabulary.scores[$0] }
        unknownScore = (normalScores.min() ?? .greatestFiniteMagnitude) - 10
        maxScore = max(normalScores.max() ?? .leastNormalMagnitude, .leastNormalMagnitude)
    }

    /// Appends the pieces of `text` (normalized) to `out`.
    func encode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [PieceSpan]) {
        guard let p = text.baseAddress, !text.isEmpty else { return }
        let n = text.count
        // The best path ending at each byte position: its score, where its last piece starts, and that piece.
        var score = [Float](repeating: 0, count: n + 1)
        var from = [Int](repeating: -1, count: n + 1)
        var piece = [Int](repeating: -1, count: n + 1)
        var start = 0
        while start < n {
            let scoreHere = score[start]
            let charLength = min(SentencePieceUTF8.charLength(p[start]), n - start)
            var coversChar = false
            trie.forEachPrefix(p + start, n - start) { length, id in
                let type = vocabulary.types[id]
                if type == .unused { return }
                let pieceScore = type == .userDefined
                    ? Float(Double(Float(length) * maxScore) - 0.1) : vocabulary.scores[id]
                let candidate = pieceScore + scoreHere
                let end = start + length
                if from[end] == -1 || candidate > score[end] {
                    score[end] = candidate
                    from[end] = start
                    piece[end] = id
                }
                if length == charLength { coversChar = true }
            }
            if !coversChar {
                let end = start + charLength
                let candidate = unknownScore + scoreHere
                if from[end] == -1 || candidate > score[end] {
                    score[end] = candidate
                    from[end] = start
                    piece[end] = vocabulary.unknownID
                }
            }
            start += charLength
        }
        let first = out.count
        var end = n
        while end > 0 {
            out.append(PieceSpan(start: from[end], end: end, id: piece[end]))
            end = from[end]
        }
        out[first...].reverse()
    }
}
