/// The tokenizer flags of Megatron-LM (`--tokenizer-type`, `--vocab-file`, ...), as one value.
public struct TokenizerOptions: Sendable, Equatable {
    /// Megatron's `--tokenizer-type` names.
    public enum Kind: String, Sendable, CaseIterable {
        case gpt2BPE = "GPT2BPETokenizer"
        case huggingFace = "HuggingFaceTokenizer"
        case tikToken = "TikTokenizer"
        case null = "NullTokenizer"
        case gptSentencePiece = "GPTSentencePieceTokenizer"
        case llama2 = "Llama2Tokenizer"
        case sentencePiece = "SentencePieceTokenizer"
    }

    public var type: Kind
    public var vocabFile: String?
    public var mergeFile: String?
    public var tokenizerModel: String?
    public var vocabSize: Int?
    public var tiktokenPattern: String?
    public var tiktokenNumSpecialTokens: Int
    public var tiktokenSpecialTokens: [String]?
    /// `--null-tokenizer-eod-id` (default `vocabSize - 1`).
    public var nullTokenizerEodId: Int?
    /// `--null-tokenizer-pad-id` (default -1: none).
    public var nullTokenizerPadId: Int

    public init(
        type: Kind, vocabFile: String? = nil, mergeFile: String? = nil, tokenizerModel: String? = nil,
        vocabSize: Int? = nil, tiktokenPattern: String? = nil, tiktokenNumSpecialTokens: Int = 1000,
        tiktokenSpecialTokens: [String]? = nil, nullTokenizerEodId: Int? = nil, nullTokenizerPadId: Int = -1
    ) {
        self.type = type
        self.vocabFile = vocabFile
        self.mergeFile = mergeFile
        self.tokenizerModel = tokenizerModel
        self.vocabSize = vocabSize
        self.tiktokenPattern = tiktokenPattern
        self.tiktokenNumSpecialTokens = tiktokenNumSpecialTokens
        self.tiktokenSpecialTokens = tiktokenSpecialTokens
        self.nullTokenizerEodId = nullTokenizerEodId
        self.nullTokenizerPadId = nullTokenizerPadId
    }
}

/// Errors raised while reading tokenizer files or options.
public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Builds the tokenizer that `options` names, reading its files.
///
/// ```swift
/// let tok = try buildTokenizer(TokenizerOptions(type: .huggingFace, tokenizerModel: "/models/llama3"))
/// ```
public func buildTokenizer(_ options: TokenizerOptions) throws -> any Tokenizer {
    func required(_ value: String?, _ flag: String) throws -> String {
        guard let value else { throw TokenizerError("\(options.type.rawValue) needs \(flag)") }
        return value
    }
    switch options.type {
    case .gpt2BPE:
        return try GPT2BPETokenizer(
            vocabFile: required(options.vocabFile, "--vocab-file"),
            mergeFile: required(options.mergeFile, "--merge-file"))
    case .huggingFace:
        return try HuggingFaceTokenizer(path: required(options.tokenizerModel, "--tokenizer-model"))
    case .tikToken:
        return try TikTokenizer(
            rankFile: required(options.tokenizerModel, "--tokenizer-model"),
            pattern: options.tiktokenPattern ?? "v2", vocabSize: options.vocabSize ?? TikTokenizer.defaultVocabSize,
            numSpecialTokens: options.tiktokenNumSpecialTokens, specialTokens: options.tiktokenSpecialTokens)
    case .gptSentencePiece, .llama2, .sentencePiece:
        return try SentencePieceTokenizer(modelFile: required(options.tokenizerModel, "--tokenizer-model"))
    case .null:
        guard let vocabSize = options.vocabSize else { throw TokenizerError("NullTokenizer needs --vocab-size") }
        guard vocabSize >= 1 else { throw TokenizerError("NullTokenizer needs a positive --vocab-size, got \(vocabSize)") }
        return NullTokenizer(vocabSize: vocabSize, eod: options.nullTokenizerEodId, pad: options.nullTokenizerPadId)
    }
}

/// Megatron's vocabulary padding: the smallest multiple of `divisibleBy * tensorParallelSize` at least `vocabSize`.
public func paddedVocabSize(_ vocabSize: Int, divisibleBy: Int = 128, tensorParallelSize: Int = 1) -> Int {
    let multiple = divisibleBy * tensorParallelSize
    return (vocabSize + multiple - 1) / multiple * multiple
}
