/// The tokenizer flags of Megatron-LM (`--tokenizer-type`, `--vocab-file`, ...), as one value.
public struct TokenizerOptions: Sendable, Equatable {
    /// Megatron's `--tokenizer-type` names.
    public enum Kind: String, Sendable, CaseIterable {
        case gpt2BPE = "GPT2BPETokenizer"
        case huggingFace = "HuggingFaceTokenizer"
        case tikToken = "TikTokenizer"
        case null = "NullTokenizer"
    }

    public var type: Kind
    public var vocabFile: String?
    public var mergeFile: String?
    public var tokenizerModel: String?
    public var vocabSize: Int?
    public var tiktokenPattern: String?
    public var tiktokenNumSpecialTokens: Int
    public var tiktokenSpecialTokens: [String]?

    public init(
        type: Kind, vocabFile: String? = nil, mergeFile: String? = nil, tokenizerModel: String? = nil,
        vocabSize: Int? = nil, tiktokenPattern: String? = nil, tiktokenNumSpecialTokens: Int = 1000,
        tiktokenSpecialTokens: [String]? = nil
    ) {
        self.type = type
        self.vocabFile = vocabFile
        self.mergeFile = mergeFile
        self.tokenizerModel = tokenizerModel
        self.vocabSize = vocabSize
        self.tiktokenPattern = tiktokenPattern
        self.tiktokenNumSpecialTokens = tiktokenNumSpecialTokens
        self.tiktokenSpecialTokens = tiktokenSpecialTokens
    }
}

/// Errors raised while reading tokenizer files or options.
public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Builds the tokenizer that `options` names, reading its files.
public func buildTokenizer(_ options: TokenizerOptions) throws -> any Tokenizer {
    throw TokenizerError("tokenizer type \(options.type.rawValue) is not implemented yet")
}

/// Megatron's vocabulary padding: the smallest multiple of `divisibleBy * tensorParallelSize` at least `vocabSize`.
public func paddedVocabSize(_ vocabSize: Int, divisibleBy: Int = 128, tensorParallelSize: Int = 1) -> Int {
    let multiple = divisibleBy * tensorParallelSize
    return (vocabSize + multiple - 1) / multiple * multiple
}
