/// The parts of a SentencePiece `ModelProto` (sentencepiece_model.proto) that encoding and decoding use, read
/// from the file's protocol-buffer bytes. Fields this reader does not know are passed over, as protobuf does;
/// defaults are the proto's own.
struct SentencePieceModelProto {
    /// `ModelProto.SentencePiece.Type`.
    enum PieceType: UInt64 {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    struct Piece {
        var bytes: [UInt8] = []
        var score: Float = 0
        var type: PieceType = .normal
    }

    /// `TrainerSpec.ModelType`.
    enum ModelType: UInt64 {
        case unigram = 1, bpe = 2, word = 3, char = 4
    }

    /// `TrainerSpec`: the fields that shape encoding and decoding.
    struct TrainerSpec {
        var modelType: ModelType = .unigram
        var byteFallback = false
        var treatWhitespaceAsSuffix = false
        var unknownPiece = Array("<unk>".utf8)
        var bosPiece = Array("<s>".utf8)
        var eosPiece = Array("</s>".utf8)
        var padPiece = Array("<pad>".utf8)
        /// What an unknown piece decodes to: " ⁇ " unless the model says otherwise.
        var unknownSurface = Array(" \u{2047} ".utf8)
    }

    /// `NormalizerSpec`.
    struct NormalizerSpec {
        var name = ""
        var precompiledCharsmap: [UInt8] = []
        var addDummyPrefix = true
        var removeExtraWhitespaces = true
        var escapeWhitespaces = true
    }

    var pieces: [Piece] = []
    var trainer = TrainerSpec()
    var normalizer = NormalizerSpec()
    /// `denormalizer_spec`, when the file has one.
    var denormalizer: NormalizerSpec?

    /// Parses `bytes`; throws `ProtobufError` saying what is malformed.
    init(_ bytes: [UInt8]) throws {
        var reader = ProtobufReader(bytes)
        while let field = try reader.next() {
            switch field.number {
            case 1: pieces.append(try Self.piece(bytes, try field.bytes("piece \(pieces.count)"), index: pieces.count))
            // A message field that occurs again is merged into what came before, as protobuf merges it.
            case 2: trainer = try Self.trainerSpec(bytes, try field.bytes("trainer_spec"), merging: trainer)
            case 3: normalizer = try Self.normalizerSpec(bytes, try field.bytes("normalizer_spec"), "normalizer_spec", merging: normalizer)
            case 5:
                denormalizer = try Self.normalizerSpec(
                    bytes, try field.bytes("denormalizer_spec"), "denormalizer_spec", merging: denormalizer ?? NormalizerSpec())
            default: continue
            }
        }
    }

    private static func piece(_ bytes: [UInt8], _ range: Range<Int>, index: Int) throws -> Piece {
        var piece = Piece()
        var reader = ProtobufReader(bytes, range)
        while let field = try reader.next() {
            switch field.number {
            case 1: piece.bytes = Array(bytes[try field.bytes("piece \(index)'s text")])
            case 2: piece.score = try field.float("piece \(index)'s score")
            case 3:
                let raw = try field.varint("piece \(index)'s type")
                guard let type = PieceType(rawValue: raw) else { throw ProtobufError("piece \(index) has unknown type \(raw)") }
                piece.type = type
            default: continue
            }
        }
        return piece
    }

    private static func trainerSpec(_ bytes: [UInt8], _ range: Range<Int>, merging spec: TrainerSpec) throws -> TrainerSpec {
        var spec = spec
        var reader = ProtobufReader(bytes, range)
        while let field = try reader.next() {
            switch field.number {
            case 3:
                let raw = try field.varint("trainer_spec.model_type")
                guard let type = ModelType(rawValue: raw) else {
                    throw ProtobufError("trainer_spec.model_type is \(raw), not a known model type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR)")
                }
                spec.modelType = type
            case 24: spec.treatWhitespaceAsSuffix = try field.varint("trainer_spec.treat_whitespace_as_suffix") != 0
            case 35: spec.byteFallback = try field.varint("trainer_spec.byte_fallback") != 0
            case 44: spec.unknownSurface = Array(bytes[try field.bytes("trainer_spec.unk_surface")])
            case 45: spec.unknownPiece = Array(bytes[try field.bytes("trainer_spec.unk_piece")])
            case 46: spec.bosPiece = Array(bytes[try field.bytes("trainer_spec.bos_piece")])
            case 47: spec.eosPiece = Array(bytes[try field.bytes("trainer_spec.eos_piece")])
            case 48: spec.padPiece = Array(bytes[try field.bytes("trainer_spec.pad_piece")])
            default: continue
            }
        }
        return spec
    }

    private static func normalizerSpec(
        _ bytes: [UInt8], _ range: Range<Int>, _ what: String, merging spec: NormalizerSpec
    ) throws -> NormalizerSpec {
        var spec = spec
        var reader = ProtobufReader(bytes, range)
        while let field = try reader.next() {
            switch field.number {
            case 1: spec.name = String(decoding: bytes[try field.bytes("\(what).name")], as: UTF8.self)
            case 2: spec.precompiledCharsmap = Array(bytes[try field.bytes("\(what).precompiled_charsmap")])
            case 3: spec.addDummyPrefix = try field.varint("\(what).add_dummy_prefix") != 0
            case 4: spec.removeExtraWhitespaces = try field.varint("\(what).remove_extra_whitespaces") != 0
            case 5: spec.escapeWhitespaces = try field.varint("\(what).escape_whitespaces") != 0
            default: continue
            }
        }
        return spec
    }
}
