/// Dataset prefixes with optional weights: `--data-path [w1] p1 [w2] p2 …` as Megatron's `get_blend_from_list`.
public struct DataBlend: Equatable, Sendable {
    public var prefixes: [String]
    /// nil: weigh by dataset length.
    public var weights: [Double]?

    public init(prefixes: [String], weights: [Double]? = nil) {
        self.prefixes = prefixes
        self.weights = weights
    }

    /// Reads `["30", "a", "70", "b"]` (weighted) or `["a", "b"]` (by length), as `--data-path` gives them.
    public init(arguments: [String]) throws {
        guard !arguments.isEmpty else { throw DatasetError("--data-path: no dataset prefix given") }
        if arguments.count % 2 == 0 {
            let pairs = stride(from: 0, to: arguments.count, by: 2).map { (arguments[$0], arguments[$0 + 1]) }
            let weights = pairs.map { Double($0.0) }
            if weights.allSatisfy({ $0 != nil }) {
                let values = weights.map { $0! }
                if let bad = values.first(where: { !($0.isFinite && $0 > 0) }) {
                    throw DatasetError("--data-path \(arguments.joined(separator: " ")): weight \(bad) is not a positive number")
                }
                self.init(prefixes: pairs.map { $0.1.trimmingWhitespace }, weights: values)
                return
            }
            if weights.contains(where: { $0 != nil }) {
                throw DatasetError("--data-path \(arguments.joined(separator: " ")): give a weight before every prefix or none at all")
            }
        }
        self.init(prefixes: arguments.map { $0.trimmingWhitespace }, weights: nil)
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}

/// What the datasets need of the tokenizer, and how Megatron's cache descriptions name it.
public struct DatasetTokenizerInfo: Sendable, Equatable {
    public var vocabSize: Int
    public var eod: Int
    public var pad: Int?
    /// The tokenizer's `unique_identifiers` as Megatron serialises them into cache descriptions.
    public var identifiers: PythonJSON

    public init(vocabSize: Int, eod: Int, pad: Int? = nil, identifiers: PythonJSON) {
        self.vocabSize = vocabSize
        self.eod = eod
        self.pad = pad
        self.identifiers = identifiers
    }

    /// From a built tokenizer, with the identifiers Megatron would record for `options`.
    public init(_ tokenizer: any Tokenizer, options: TokenizerOptions) {
        self.init(vocabSize: tokenizer.vocabSize, eod: tokenizer.eod, pad: tokenizer.pad,
                  identifiers: megatronTokenizerIdentifiers(options))
    }

    /// The id that pads short samples: the tokenizer's pad, or −1 when it has none or it clashes with EOD.
    public var padID: Int {
        guard let pad, pad != eod else { return -1 }
        return pad
    }
}

/// The `unique_identifiers` Megatron's `build_tokenizer` gives a tokenizer, so cache hashes agree with
/// Megatron's for the same files and flags (its defaults assumed for its tokenizer flags we do not have).
/// Checked against Megatron's own `build_tokenizer` by scripts/fixtures/make_dataset_fixtures.py.
public func megatronTokenizerIdentifiers(_ options: TokenizerOptions) -> PythonJSON {
    let textClass = PythonJSON.string("megatron.core.tokenizers.text.text_tokenizer.MegatronTokenizerText")
    func str(_ s: String?) -> PythonJSON { .string(s ?? "None") }
    switch options.type {
    case .null:
        var pairs: [(String, PythonJSON)] = [("class", textClass), ("tokenizer_path", .null)]
        if let v = options.vocabSize { pairs.append(("vocab_size", .string(String(v)))) }
        // --null-tokenizer-pad-id defaults to -1 and is always passed; --null-tokenizer-eod-id only when set.
        pairs.append(("pad_id", .string("-1")))
        return .object(pairs)
    case .gpt2BPE:
        return .object([("class", textClass), ("tokenizer_path", .string("GPT2BPETokenizer")),
                        ("additional_special_tokens", .string("[]")), ("vocab_file", str(options.vocabFile)),
                        ("merges_file", str(options.mergeFile)), ("use_fast", .string("True")),
                        ("trust_remote_code", .string("False")), ("include_special_tokens", .string("True")),
                        ("use_gigatoken", .string("False"))])
    case .huggingFace:
        return .object([("class", textClass), ("tokenizer_path", str(options.tokenizerModel)),
                        ("chat_template", .string("None")), ("vocab_file", str(options.vocabFile)),
                        ("merges_file", str(options.mergeFile)), ("additional_special_tokens", .string("[]")),
                        ("use_fast", .string("True")), ("trust_remote_code", .string("False")),
                        ("include_special_tokens", .string("True")), ("use_gigatoken", .string("False"))])
    case .tikToken:
        var pairs: [(String, PythonJSON)] = [("class", textClass), ("tokenizer_path", str(options.tokenizerModel)),
                                             ("chat_template", .string("None"))]
        if let p = options.tiktokenPattern { pairs.append(("pattern", .string(p))) }
        if let v = options.vocabSize { pairs.append(("vocab_size", .string(String(v)))) }
        pairs.append(("num_special_tokens", .string(String(options.tiktokenNumSpecialTokens))))
        pairs.append(("special_tokens", .string(options.tiktokenSpecialTokens.map { "[" + $0.map { "'\($0)'" }.joined(separator: ", ") + "]" } ?? "None")))
        return .object(pairs)
    case .gptSentencePiece, .llama2, .sentencePiece:
        // --chat-template, --no-tokenizer-sentencepiece-ignore-extra-whitespaces, --tokenizer-sentencepiece-legacy
        // and --tokenizer-special-tokens at their defaults.
        return .object([("class", textClass), ("tokenizer_path", str(options.tokenizerModel)),
                        ("chat_template", .string("None")), ("ignore_extra_whitespaces", .string("True")),
                        ("legacy", .string("False")), ("special_tokens", .string("None"))])
    }
}

/// The options of Megatron's `GPTDatasetConfig` (and its `BlendedMegatronDatasetConfig` base) that
/// our datasets use; flag names in comments.
///
/// ```swift
/// var config = GPTDatasetConfig(sequenceLength: 1024, tokenizer: info)
/// config.blend = try DataBlend(arguments: ["my-gpt2_text_document"])
/// config.split = "969,30,1"
/// config.pathToCache = "/data/cache"
/// let splits = try BlendedDatasetBuilder(config: config, sizes: [8000, 160, 16]).build()
/// ```
public struct GPTDatasetConfig: Sendable {
    /// `--seed`.
    public var randomSeed: Int = 1234
    /// `--seq-length`.
    public var sequenceLength: Int
    /// `--data-path`.
    public var blend: DataBlend?
    /// `--train-data-path`, `--valid-data-path`, `--test-data-path`.
    public var blendPerSplit: [DataBlend?]?
    /// `--split`; nil uses Megatron's legacy default `969, 30, 1` when `blend` is set.
    public var split: String?
    /// `--data-cache-path`; nil caches beside each dataset in `<prefix>/cache/GPTDataset_indices`.
    public var pathToCache: String?
    public var tokenizer: DatasetTokenizerInfo
    /// `--reset-position-ids`.
    public var resetPositionIDs = false
    /// `--reset-attention-mask`.
    public var resetAttentionMask = false
    /// `--eod-mask-loss`.
    public var eodMaskLoss = false
    /// Off with `--no-create-attention-mask-in-dataloader`.
    public var createAttentionMask = true
    public var dropLastPartialValidationSequence = true
    public var addExtraTokenToSequence = true
    /// `--mid-level-dataset-surplus`.
    public var midLevelDatasetSurplus = 0.005
    /// `--mock-data`: synthetic documents instead of files.
    public var mock = false

    public init(sequenceLength: Int, tokenizer: DatasetTokenizerInfo, randomSeed: Int = 1234) {
        self.sequenceLength = sequenceLength
        self.tokenizer = tokenizer
        self.randomSeed = randomSeed
    }

    /// Whether synthetic data is used: asked for, or no data path given (as Megatron decides).
    public var usesMockData: Bool { mock || (blend == nil && (blendPerSplit ?? []).allSatisfy { $0 == nil }) }

    /// The split string in effect: `"1,1,1"` for mock data, the legacy default when only `blend` is set.
    var effectiveSplit: String? {
        if usesMockData { return "1,1,1" }
        if blendPerSplit != nil && blend == nil { return nil }
        return split ?? "969, 30, 1"
    }

    func splitMatrix() throws -> SplitMatrix? {
        guard let s = effectiveSplit else { return nil }
        return try SplitMatrix(parsing: s)
    }

}
