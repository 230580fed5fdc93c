/// Megatron's `TikTokenizer`: a tiktoken rank file behind Megatron's special-token layout.
///
/// Ids `0 ..< numSpecialTokens` are special tokens (`<unk> <s> </s> <mask> <pad> <cls> <sep>` by default, then
/// `<SPECIAL_7>`, `<SPECIAL_8>`, ...), ranks follow shifted by `numSpecialTokens`, and only the first
/// `vocabSize - numSpecialTokens` ranks are kept. Special tokens in the text are encoded as such.
///
/// ```swift
/// let tok = try TikTokenizer(rankFile: "cl100k_base.tiktoken", pattern: "v2", vocabSize: 101_256)
/// tok.encode("hi</s>")  // [...ranks + 1000..., 2]
/// ```
public struct TikTokenizer: Tokenizer {
    /// Megatron's `SPECIAL_TOKENS`, which any custom list must contain.
    public static let requiredSpecialTokens = ["<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>"]
    /// Megatron's `DEFAULT_TIKTOKEN_MAX_VOCAB`.
    public static let defaultVocabSize = 1 << 17

    public let encoding: TikTokenEncoding
    public let specialTokens: [String]
    public let vocabSize: Int
    public let eod: Int
    public let bos: Int?
    public let pad: Int?

    public init(
        rankFile: String, pattern: String = "v2", vocabSize: Int = TikTokenizer.defaultVocabSize,
        numSpecialTokens: Int = 1000, specialTokens: [String]? = nil
    ) throws {
        let named = specialTokens ?? TikTokenizer.requiredSpecialTokens
        guard Set(named).count == named.count else {
            throw TokenizerError("tiktoken special tokens must be unique: \(named)")
        }
        guard named.count <= numSpecialTokens, numSpecialTokens < vocabSize, vocabSize <= TokenizerFile.maxTokenID else {
            throw TokenizerError(
                "need len(special tokens) \(named.count) <= --tiktoken-num-special-tokens \(numSpecialTokens) < --vocab-size \(vocabSize) <= \(TokenizerFile.maxTokenID)")
        }
        let missing = TikTokenizer.requiredSpecialTokens.filter { !named.contains($0) }
        guard missing.isEmpty else { throw TokenizerError("tiktoken special tokens must include \(missing)") }
        let layout = named + (named.count..<numSpecialTokens).map { "<SPECIAL_\($0)>" }
        let innerVocab = vocabSize - numSpecialTokens
        let encoding = try TikTokenEncoding(
            rankFile: rankFile, pattern: try TikTokenizer.pattern(named: pattern),
            specialTokens: layout.enumerated().map { ($0.element, $0.offset) }, idOffset: numSpecialTokens,
            maxRanks: innerVocab)
        guard encoding.rankCount == innerVocab else {
            throw TokenizerError(
                "\(rankFile) has \(encoding.rankCount) ranks but vocab size \(vocabSize) - \(numSpecialTokens) special tokens needs \(innerVocab); pass --vocab-size \(encoding.rankCount + numSpecialTokens)")
        }
        self.encoding = encoding
        self.specialTokens = layout
        self.vocabSize = vocabSize
        eod = layout.firstIndex(of: "</s>")!
        bos = layout.firstIndex(of: "<s>")!
        pad = layout.firstIndex(of: "<pad>")!
    }

    /// `--tiktoken-pattern`: `v1` or `v2`.
    static func pattern(named name: String) throws -> PreTokenizerPattern {
        switch name {
        case "v1": return .megatronV1
        case "v2": return .megatronV2
        default: throw TokenizerError("--tiktoken-pattern must be v1 or v2, got \(name)")
        }
    }

    public func encode(_ text: String) -> [Int] { encoding.encode(text) }
    public func decode(_ ids: [Int]) -> String { encoding.decode(ids) }
}
