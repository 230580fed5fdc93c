/// Megatron's SentencePiece tokenizers (`--tokenizer-type GPTSentencePieceTokenizer`, `Llama2Tokenizer`,
/// `SentencePieceTokenizer`, all with `--tokenizer-model <file.model>`). Megatron builds all three as one class
/// (megatron/core/tokenizers/text/libraries/sentencepiece_tokenizer.py, its default non-legacy mode), and so do
/// we: the vocabulary is the model's pieces, the end of document is `eos_id`, `bos` and `pad` are `bos_id` /
/// `pad_id` (nil where SentencePiece says -1), text is encoded without BOS or EOS, and ids decode as
/// `decode_ids` does. BPE and unigram models are read, with their normalization rules, byte fallback and
/// user-defined symbols.
///
/// ```swift
/// let tok = try SentencePieceTokenizer(modelFile: "llama2/tokenizer.model")
/// let ids = tok.encode("Hello world")   // LLaMA-2: [15043, 3186]; tok.eod == 2, tok.bos == 1
/// print(tok.decode(ids))
/// ```
public struct SentencePieceTokenizer: Tokenizer {
    let processor: SentencePieceProcessor
    public var vocabSize: Int { processor.pieceCount }
    public let eod: Int
    public var bos: Int? { processor.bosID }
    public var pad: Int? { processor.padID }

    /// Reads the model at `modelFile`; errors name it and `flag`.
    public init(modelFile: String, flag: String = "--tokenizer-model") throws {
        processor = try SentencePieceProcessor(modelFile: modelFile, flag: flag)
        guard let eos = processor.eosID else {
            throw TokenizerError(
                "\(flag) \(modelFile) has no end-of-sentence piece (a CONTROL piece named as trainer_spec.eos_piece, \"</s>\" by default), which Megatron uses as the end-of-document id")
        }
        eod = eos
    }

    public func encode(_ text: String) -> [Int] { processor.encode(text) }
    public func decode(_ ids: [Int]) -> String { processor.decode(ids) }
}
