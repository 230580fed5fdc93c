import Foundation

/// A SentencePiece model (`.model`) as the `sentencepiece` package's `SentencePieceProcessor` runs it:
/// `encode` equals `encode_as_ids` and `decode` equals `decode_ids`, for BPE and unigram models.
///
/// ```swift
/// let sp = try SentencePieceProcessor(modelFile: "tokenizer.model")
/// let ids = sp.encode("Hello world")
/// print(sp.decode(ids))
/// ```
struct SentencePieceProcessor: Sendable {
    enum Model: Sendable {
        case bpe(SentencePieceBPE)
        case unigram(SentencePieceUnigram)
    }

    let vocabulary: SentencePieceVocabulary
    let normalizer: SentencePieceNormalizer
    let model: Model
    let decoding: SentencePieceDecoder

    /// Reads `path`; every error names the file (and `flag`, the option that gave it).
    init(modelFile path: String, flag: String = "--tokenizer-model") throws {
        let data = try TokenizerFile.contents(path, flag: flag)
        do {
            try self.init(bytes: [UInt8](data))
        } catch let error as ProtobufError {
            throw TokenizerError("\(flag) \(path) is not a SentencePiece model: \(error.description)")
        } catch let error as TokenizerError {
            throw TokenizerError("\(flag) \(path): \(error.description)")
        }
    }

    init(bytes: [UInt8]) throws {
        let proto = try SentencePieceModelProto(bytes)
        guard !proto.pieces.isEmpty else {
            throw TokenizerError("it has no pieces, so it is no SentencePiece model (a ModelProto's field 1)")
        }
        if let denormalizer = proto.denormalizer, !denormalizer.precompiledCharsmap.isEmpty {
            throw TokenizerError("it has denormalization rules (denormalizer_spec), which are not supported")
        }
        vocabulary = try SentencePieceVocabulary(proto)
        do {
            normalizer = try SentencePieceNormalizer(
                proto.normalizer, treatWhitespaceAsSuffix: proto.trainer.treatWhitespaceAsSuffix,
                userDefined: vocabulary.userDefined)
        } catch let error as TokenizerError {
            throw TokenizerError("normalizer \"\(proto.normalizer.name)\": \(error.description)")
        }
        switch proto.trainer.modelType {
        case .bpe: model = .bpe(SentencePieceBPE(vocabulary))
        case .unigram: model = .unigram(SentencePieceUnigram(vocabulary))
        case .word, .char:
            throw TokenizerError("it is a \(proto.trainer.modelType == .word ? "WORD" : "CHAR") model; only BPE and unigram models are supported")
        }
        decoding = SentencePieceDecoder(vocabulary, proto)
        unknownID = vocabulary.unknownID
        bosID = vocabulary.special(proto.trainer.bosPiece, .control)
        eosID = vocabulary.special(proto.trainer.eosPiece, .control)
        padID = vocabulary.special(proto.trainer.padPiece, .control)
    }

    var pieceCount: Int { vocabulary.pieces.count }
    let unknownID: Int
    /// `bos_id()`, `eos_id()`, `pad_id()`: the trainer's named piece when it is a CONTROL piece, else nil (-1).
    let bosID: Int?
    let eosID: Int?
    let padID: Int?

    /// The ids of `text`: normalized, cut into pieces by the model, an unknown piece spelled as its bytes' pieces
    /// with byte fallback, and adjacent unknown pieces as one otherwise.
    func encode(_ text: String) -> [Int] {
        var text = text
        return text.withUTF8 { input in
            let normalized = normalizer.normalize(input)
            var pieces: [PieceSpan] = []
            pieces.reserveCapacity(normalized.count / 3)
            normalized.withUnsafeBufferPointer { bytes in
                switch model {
                case .bpe(let bpe): bpe.encode(bytes, into: &pieces)
                case .unigram(let unigram): unigram.encode(bytes, into: &pieces)
                }
            }
            return ids(pieces, normalized)
        }
    }

    private func ids(_ pieces: [PieceSpan], _ normalized: [UInt8]) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(pieces.count)
        var previousWasUnknown = false
        for piece in pieces {
            let isUnknown = vocabulary.types[piece.id] == .unknown
            if isUnknown && vocabulary.byteFallback {
                for k in piece.start..<piece.end { ids.append(vocabulary.byteIDs[Int(normalized[k])]) }
            } else if !(isUnknown && previousWasUnknown) {
                ids.append(piece.id)
            }
            previousWasUnknown = isUnknown
        }
        return ids
    }

    func decode(_ ids: [Int]) -> String { decoding.decode(ids) }
}
