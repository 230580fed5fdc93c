/// Megatron's `NullTokenizer`: text is token ids written as integers separated by single spaces.
///
/// ```swift
/// let tok = NullTokenizer(vocabSize: 1000)
/// tok.encode("5 7 9")  // [5, 7, 9]; tok.eod == 999
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

    /// Splits on single spaces like Python's `text.split(' ')`; a field that is not an integer stops the
    /// program with its text, as Megatron's `int(x)` raises.
    public func encode(_ text: String) -> [Int] {
        text.split(separator: " ", omittingEmptySubsequences: false).map { field in
            guard let id = Int(field) else { preconditionFailure("NullTokenizer: \"\(field)\" is not an integer id") }
            return id
        }
    }

    public func decode(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: " ") }
}
