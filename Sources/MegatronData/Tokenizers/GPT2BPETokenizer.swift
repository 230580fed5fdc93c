import Foundation

/// Megatron's `GPT2BPETokenizer`: GPT-2's byte-level BPE from `--vocab-file` (vocab.json) and `--merge-file`
/// (merges.txt), with `<|endoftext|>` as the end-of-document token and recognized in text.
///
/// ```swift
/// let tok = try GPT2BPETokenizer(vocabFile: "gpt2-vocab.json", mergeFile: "gpt2-merges.txt")
/// tok.encode("Hello world")  // [15496, 995] with GPT-2's files
/// ```
public struct GPT2BPETokenizer: Tokenizer {
    public static let endOfText = "<|endoftext|>"
    let core: BPETokenizerCore
    public let vocabSize: Int
    public let eod: Int
    /// GPT-2 uses `<|endoftext|>` for beginning of sequence too.
    public var bos: Int? { eod }
    public var pad: Int? { nil }

    public init(vocabFile: String, mergeFile: String) throws {
        let vocab = try TokenizerFile.vocabulary(TokenizerFile.json(vocabFile, flag: "--vocab-file"), "--vocab-file \(vocabFile)")
        let mergeData = try TokenizerFile.contents(mergeFile, flag: "--merge-file")
        guard let eod = vocab[GPT2BPETokenizer.endOfText] else {
            throw TokenizerError("--vocab-file \(vocabFile) has no \(GPT2BPETokenizer.endOfText) token")
        }
        let merges = try GPT2BPETokenizer.merges(String(decoding: mergeData, as: UTF8.self), mergeFile)
        let vocabulary = BPEVocabulary(vocab: vocab, merges: merges, byteLevel: true)
        let model: BPEModel
        do {
            model = try vocabulary.model()
        } catch let error as TokenizerError {
            throw TokenizerError("--merge-file \(mergeFile): \(error.description) in --vocab-file \(vocabFile)")
        }
        let added = [(GPT2BPETokenizer.endOfText, eod)]
        var preTokenizer = PreTokenizer()
        preTokenizer.splits = [.pattern(.gpt2)]
        core = BPETokenizerCore(
            addedTokens: SpecialTokenMatcher(added), normalizers: [], preTokenizer: preTokenizer,
            model: model, prefixIds: [], suffixIds: [],
            tokenStrings: vocabulary.tokenStrings(added: added), decoder: [.byteLevel])
        vocabSize = vocab.count
        self.eod = eod
    }

    /// merges.txt: an optional `#version` line, then `left right` per line.
    static func merges(_ text: String, _ path: String) throws -> [(String, String)] {
        var result: [(String, String)] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            if number == 0 && line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw TokenizerError("--merge-file \(path): line \(number + 1) is not `left right`") }
            result.append((String(parts[0]), String(parts[1])))
        }
        return result
    }

    public func encode(_ text: String) -> [Int] { core.encode(text) }
    public func decode(_ ids: [Int]) -> String { core.decode(ids) }
}
