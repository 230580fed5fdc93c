/// A text tokenizer as Megatron's `--tokenizer-type` names them.
///
/// Ids are `Int` on the Swift side; datasets store them as `UInt16` or `Int32` on disk.
///
/// ```swift
/// let tok = try buildTokenizer(TokenizerOptions(type: .gpt2BPE, vocabFile: "vocab.json", mergeFile: "merges.txt"))
/// let ids = try tok.encode("Hello world")
/// print(tok.decode(ids))
/// ```
public protocol Tokenizer: Sendable {
    /// Size of the vocabulary before Megatron's padding (`--make-vocab-size-divisible-by`).
    var vocabSize: Int { get }
    /// End-of-document id appended by `--append-eod`.
    var eod: Int { get }
    /// Beginning-of-sequence id, where the vocabulary has one.
    var bos: Int? { get }
    /// Padding id, where the vocabulary has one.
    var pad: Int? { get }
    /// The ids of `text`; throws where the text cannot be tokenized (NullTokenizer text that is not ids).
    func encode(_ text: String) throws -> [Int]
    func decode(_ ids: [Int]) -> String
}
