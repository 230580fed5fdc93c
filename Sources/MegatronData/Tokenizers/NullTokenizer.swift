import Foundation

/// Megatron's `NullTokenizer`: text is token ids written as integers separated by single spaces.
///
/// ```swift
/// let tok = NullTokenizer(vocabSize: 1000)
/// try tok.encode("5 7 9")  // [5, 7, 9]; tok.eod == 999
/// ```
public struct NullTokenizer: Tokenizer {
    public let vocabSize: Int
    public let eod: Int
    /// Megatron's `--null-tokenizer-pad-id` defaults to -1, "no pad token": that is nil here.
    public let pad: Int?
    public var bos: Int? { nil }

    /// `eod` defaults to `vocabSize - 1` (`--null-tokenizer-eod-id`), `pad` to -1 (`--null-tokenizer-pad-id`).
    public init(vocabSize: Int, eod: Int? = nil, pad: Int = -1) {
        self.vocabSize = vocabSize
        self.eod = eod ?? vocabSize - 1
        self.pad = pad < 0 ? nil : pad
    }

    /// Splits on single spaces like Python's `text.split(' ')` and reads each field as `int(x)` does
    /// (surrounding whitespace allowed). A field that is not an integer, or an id outside the vocabulary,
    /// is an error naming it: Megatron raises on the first and writes the second into the dataset, where
    /// it fails training much later.
    public func encode(_ text: String) throws -> [Int] {
        try text.split(separator: " ", omittingEmptySubsequences: false).map { field in
            guard let id = Int(field.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw TokenizerError("NullTokenizer: \"\(field.prefix(40))\" in \"\(text.prefix(80))\" is not an integer token id")
            }
            guard id >= 0 && id < vocabSize else {
                throw TokenizerError("NullTokenizer: token id \(id) in \"\(text.prefix(80))\" is outside the vocabulary 0..<\(vocabSize) (--vocab-size)")
            }
            return id
        }
    }

    public func decode(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: " ") }
}
