/// SentencePiece's `DecodeIds`: pieces joined with `▁` written as a space; control pieces vanish, the unknown
/// piece reads as the model's unknown surface (" ⁇ "), and runs of byte pieces are read as UTF-8 with each
/// malformed byte a U+FFFD. The dummy `▁` the normalizer put first is dropped: from the first piece only, or,
/// when the model removes extra whitespace, from every piece until text appears.
struct SentencePieceDecoder: Sendable {
    private let vocabulary: SentencePieceVocabulary
    /// The id SentencePiece sees when it looks each id's piece up again (they differ only where a reserved and
    /// an ordinary piece share a spelling).
    private let canonicalIDs: [Int]
    private let byteOfPiece: [Int: UInt8]
    private let unknownSurface: [UInt8]
    private let dropsDummyPrefix: Bool
    private let removesExtraWhitespaces: Bool

    init(_ vocabulary: SentencePieceVocabulary, _ proto: SentencePieceModelProto) {
        self.vocabulary = vocabulary
        canonicalIDs = vocabulary.pieces.map { vocabulary.id($0) }
        byteOfPiece = Dictionary(uniqueKeysWithValues: vocabulary.byteIDs.enumerated().filter { $0.element >= 0 }
            .map { ($0.element, UInt8($0.offset)) })
        unknownSurface = proto.trainer.unknownSurface
        dropsDummyPrefix = proto.normalizer.addDummyPrefix || proto.normalizer.removeExtraWhitespaces
        removesExtraWhitespaces = proto.normalizer.removeExtraWhitespaces
    }

    /// The text of `ids`; ids outside the vocabulary (which SentencePiece refuses) are skipped.
    func decode(_ ids: [Int]) -> String {
        var text: [UInt8] = []
        var pendingBytes: [UInt8] = []
        var expectsDummySpace = true
        var sawDummySpace = false
        for raw in ids where raw >= 0 && raw < canonicalIDs.count {
            let id = canonicalIDs[raw]
            if let byte = byteOfPiece[id] {
                pendingBytes.append(byte)
                continue
            }
            appendBytes(&pendingBytes, to: &text)
            if sawDummySpace || !text.isEmpty { expectsDummySpace = false }
            sawDummySpace = append(id, to: &text, expectsDummySpace: expectsDummySpace)
        }
        appendBytes(&pendingBytes, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Appends the surface of non-byte piece `id`; true when it dropped a dummy `▁` that ends the search for one.
    private func append(_ id: Int, to text: inout [UInt8], expectsDummySpace: Bool) -> Bool {
        switch vocabulary.types[id] {
        case .control: return false
        case .unknown:
            text += unknownSurface
            return false
        default:
            var piece = vocabulary.pieces[id][...]
            var dropped = false
            if expectsDummySpace && dropsDummyPrefix && piece.starts(with: SentencePieceNormalizer.spaceSymbol) {
                piece = piece.dropFirst(3)
                dropped = !removesExtraWhitespaces
            }
            text += replacing(Array(piece), SentencePieceNormalizer.spaceSymbol, [0x20])
            return dropped
        }
    }

    /// Appends a run of byte pieces' bytes as SentencePiece reads them, and empties the run.
    private func appendBytes(_ bytes: inout [UInt8], to text: inout [UInt8]) {
        var k = 0
        while k < bytes.count {
            if let length = SentencePieceUTF8.validLength(bytes, at: k) {
                text += bytes[k..<(k + length)]
                k += length
            } else {
                text += SentencePieceUTF8.replacementCharacter
                k += 1
            }
        }
        bytes.removeAll(keepingCapacity: true)
    }
}
