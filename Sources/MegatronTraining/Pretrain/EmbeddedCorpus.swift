import MegatronCore

/// The built-in corpus of a run without data flags, as byte-token streams: 97% of its documents for
/// training, 3% for validation, each document followed by the end-of-document token.
struct EmbeddedCorpus {
    let train: [Int]
    let valid: [Int]

    init(seed: Int) {
        let documents = SyntheticCorpus.documents(count: 4000, seed: UInt64(seed))
        let cut = documents.count * 97 / 100
        func stream(_ docs: ArraySlice<String>) -> [Int] {
            docs.flatMap { ByteTokens.encode($0) + [ByteTokens.endOfDocument] }
        }
        (train, valid) = (stream(documents[..<cut]), stream(documents[cut...]))
    }

    /// The longest `--seq-length` both splits hold a sample of (a sample is the sequence and one more token).
    var longestSequence: Int { min(train.count, valid.count) - 1 }

    /// Train and validation samples of `sequenceLength` tokens; at most `longestSequence`.
    func splits(sequenceLength: Int, seed: Int) -> (TokenWindows, TokenWindows) {
        (TokenWindows(tokens: train, sequenceLength: sequenceLength, seed: UInt64(seed)),
         TokenWindows(tokens: valid, sequenceLength: sequenceLength, seed: UInt64(seed) + 1))
    }
}
