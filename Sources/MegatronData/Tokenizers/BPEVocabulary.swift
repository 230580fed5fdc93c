/// A BPE vocabulary as the files spell it (`vocab.json` + merges, or a `tokenizer.json` model), turned into the
/// byte-keyed tables the merge engine uses.
struct BPEVocabulary {
    var vocab: [String: Int]
    var merges: [(String, String)]
    /// Tokens are spelled in GPT-2's byte-to-unicode alphabet.
    var byteLevel: Bool
    var byteFallback = false
    var unknownToken: String? = nil
    var fuseUnknown = false
    var ignoreMerges = false

    /// The bytes a token stands for: byte-level spelling undone, or the token's own UTF-8.
    private func bytes(of token: String) -> [UInt8]? {
        byteLevel ? ByteLevelAlphabet.bytes(of: token) : Array(token.utf8)
    }

    func model() throws -> BPEModel {
        let table = ByteSequenceTable(vocab.compactMap { token, id in bytes(of: token).map { ($0, id) } })
        var pairs: [(left: Int32, right: Int32, merged: Int32, rank: Int32)] = []
        pairs.reserveCapacity(merges.count)
        for (rank, (left, right)) in merges.enumerated() {
            guard let l = vocab[left], let r = vocab[right] else {
                throw TokenizerError("merge \(rank) (\(left) \(right)) uses a token missing from the vocabulary")
            }
            guard let merged = vocab[left + right] else {
                throw TokenizerError("merge \(rank) (\(left) \(right)) makes \(left + right), missing from the vocabulary")
            }
            pairs.append((Int32(l), Int32(r), Int32(merged), Int32(rank)))
        }
        let alphabet: BPEModel.Alphabet
        if byteLevel {
            alphabet = .bytes
        } else {
            alphabet = .scalars(
                byteFallback: byteFallback, unknown: unknownToken.flatMap { vocab[$0] }.map(Int32.init),
                fuseUnknown: fuseUnknown)
        }
        return BPEModel(tokens: table, merges: PairMergeTable(pairs), alphabet: alphabet, wholePieceFirst: ignoreMerges)
    }

    /// Token strings by id, for decoding, with added tokens laid over the vocabulary.
    func tokenStrings(added: [(String, Int)]) -> [String?] {
        let count = max(vocab.values.max() ?? -1, added.map(\.1).max() ?? -1) + 1
        var strings = [String?](repeating: nil, count: count)
        for (token, id) in vocab { strings[id] = token }
        for (token, id) in added { strings[id] = token }
        return strings
    }
}
