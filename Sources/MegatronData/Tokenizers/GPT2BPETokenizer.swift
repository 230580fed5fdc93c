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
        guard let vocabData = FileManager.default.contents(atPath: vocabFile),
            let vocab = try JSONSerialization.jsonObject(with: vocabData) as? [String: Int]
        else { throw TokenizerError("cannot read --vocab-file \(vocabFile) as a JSON token-to-id map") }
        guard let mergeData = FileManager.default.contents(atPath: mergeFile) else {
            throw TokenizerError("cannot read --merge-file \(mergeFile)")
        }
        guard let eod = vocab[GPT2BPETokenizer.endOfText] else {
            throw TokenizerError("\(vocabFile) has no \(GPT2BPETokenizer.endOfText) token")
        }
        let merges = try GPT2BPETokenizer.merges(String(decoding: mergeData, as: UTF8.self), mergeFile)
        let vocabulary = BPEVocabulary(vocab: vocab, merges: merges, byteLevel: true)
        let added = [(GPT2BPETokenizer.endOfText, eod)]
        var preTokenizer = PreTokenizer()
        preTokenizer.splits = [.pattern(.gpt2)]
        core = BPETokenizerCore(
            addedTokens: SpecialTokenMatcher(added), normalizers: [], preTokenizer: preTokenizer,
            model: try vocabulary.model(), prefixIds: [], suffixIds: [],
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
            guard parts.count == 2 else { throw TokenizerError("\(path): line \(number + 1) is not `left right`") }
            result.append((String(parts[0]), String(parts[1])))
        }
        return result
    }

    public func encode(_ text: String) -> [Int] { core.encode(text) }
    public func decode(_ ids: [Int]) -> String { core.decode(ids) }
}
