/// The pieces of a SentencePiece model as its encoder and decoder look them up, checked as SentencePiece checks
/// them when it loads a model: no empty or repeated piece, exactly one unknown piece, byte pieces only with
/// byte fallback and then all 256 of them.
struct SentencePieceVocabulary: Sendable {
    typealias PieceType = SentencePieceModelProto.PieceType

    let pieces: [[UInt8]]
    let scores: [Float]
    let types: [PieceType]
    /// NORMAL, USER_DEFINED and UNUSED pieces: what text is made of.
    let ordinary: ByteSequenceTable
    /// CONTROL, UNKNOWN and BYTE pieces, which SentencePiece looks up first.
    private let reserved: ByteSequenceTable
    let unknownID: Int
    /// Unknown characters become their UTF-8 bytes' `<0xXX>` pieces.
    let byteFallback: Bool
    /// The id of each byte's `<0xXX>` piece, -1 without byte fallback.
    let byteIDs: [Int]
    /// USER_DEFINED pieces, which are taken whole wherever they occur; nil when there are none.
    let userDefined: PieceTrie?

    init(_ proto: SentencePieceModelProto) throws {
        pieces = proto.pieces.map(\.bytes)
        scores = proto.pieces.map(\.score)
        types = proto.pieces.map(\.type)
        guard pieces.count <= TokenizerFile.maxTokenID else {
            throw TokenizerError("it has \(pieces.count) pieces, more than \(TokenizerFile.maxTokenID)")
        }
        var ordinaryEntries: [(bytes: [UInt8], id: Int)] = []
        var reservedEntries: [(bytes: [UInt8], id: Int)] = []
        var seen: [Bool: Set<[UInt8]>] = [true: [], false: []]
        var unknown: Int?
        var bytes = [Int](repeating: -1, count: 256)
        for (id, piece) in proto.pieces.enumerated() {
            let name = String(decoding: piece.bytes, as: UTF8.self).debugDescription
            guard !piece.bytes.isEmpty else { throw TokenizerError("piece \(id) is empty") }
            let isOrdinary = [.normal, .userDefined, .unused].contains(piece.type)
            guard seen[isOrdinary]!.insert(piece.bytes).inserted else { throw TokenizerError("piece \(name) is defined twice") }
            if isOrdinary { ordinaryEntries.append((piece.bytes, id)) } else { reservedEntries.append((piece.bytes, id)) }
            switch piece.type {
            case .unknown:
                guard unknown == nil else { throw TokenizerError("it has two unknown pieces, \(unknown!) and \(id)") }
                unknown = id
            case .byte:
                guard proto.trainer.byteFallback else {
                    throw TokenizerError("byte piece \(name) is found although byte_fallback is false")
                }
                guard let byte = Self.byteOfPiece(piece.bytes) else { throw TokenizerError("byte piece \(name) is not <0x00>...<0xFF>") }
                bytes[byte] = id
            default: break
            }
        }
        guard let unknown else { throw TokenizerError("it has no unknown piece (type UNKNOWN)") }
        if proto.trainer.byteFallback, let missing = bytes.firstIndex(of: -1) {
            throw TokenizerError("byte_fallback is true but there is no byte piece \(byteFallbackToken(missing))")
        }
        unknownID = unknown
        byteFallback = proto.trainer.byteFallback
        byteIDs = bytes
        ordinary = ByteSequenceTable(ordinaryEntries)
        reserved = ByteSequenceTable(reservedEntries)
        let userEntries = ordinaryEntries.filter { proto.pieces[$0.id].type == .userDefined }
        userDefined = userEntries.isEmpty ? nil : PieceTrie(userEntries)
    }

    /// SentencePiece's `PieceToId`: a reserved piece, else an ordinary one, else the unknown piece.
    @inline(__always)
    func id(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        if let id = reserved.id(p, n) { return Int(id) }
        if let id = ordinary.id(p, n) { return Int(id) }
        return unknownID
    }

    func id(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { id($0.baseAddress!, $0.count) }
    }

    /// The id of special piece `bytes` (`<s>`, `</s>`, ...) when it has type `type`, as `bos_id()` and the like
    /// answer it; nil where SentencePiece answers -1.
    func special(_ bytes: [UInt8], _ type: PieceType) -> Int? {
        guard !bytes.isEmpty else { return nil }
        let id = id(bytes)
        return types[id] == type ? id : nil
    }

    /// The byte of a `<0xAB>` piece, exactly as SentencePiece writes them (two upper-case hex digits).
    static func byteOfPiece(_ bytes: [UInt8]) -> Int? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard bytes.count == 6, text.hasPrefix("<0x"), text.hasSuffix(">"),
            let value = Int(text.dropFirst(3).dropLast(), radix: 16), byteFallbackToken(value) == text
        else { return nil }
        return value
    }
}
