/// A Megatron indexed dataset (`prefix.bin` + `prefix.idx`), memory-mapped and validated on open.
///
/// ```swift
/// let data = try IndexedDataset(pathPrefix: "my-gpt2_text_document")
/// print(data.sequenceCount, data.documentCount)
/// let firstTokens = data.sequence(0)            // [Int32]
/// let slice = data.sequence(3, offset: 10, length: 5)
/// ```
///
/// Layout of the `.idx` (little-endian): 9-byte magic `MMIDIDX\0\0`, version `<Q` = 1, dtype code `<B`,
/// sequence count `<Q` N, document-index count `<Q`, then N int32 lengths, N int64 byte pointers and the
/// int64 document indices `[0, …, N]`. Nothing follows (the multimodal mode array is not supported).
public struct IndexedDataset: @unchecked Sendable {
    public static let magic: [UInt8] = [0x4D, 0x4D, 0x49, 0x44, 0x49, 0x44, 0x58, 0x00, 0x00]
    public static let headerSize = 34

    public let pathPrefix: String
    public let dtype: TokenDType
    public let sequenceCount: Int
    /// Number of entries of the document index, including its leading 0 (documents + 1).
    public let documentIndexCount: Int
    private let index: MappedFile
    private let data: MappedFile

    public var documentCount: Int { documentIndexCount - 1 }
    public var idxPath: String { index.path }
    public var binPath: String { data.path }

    /// Opens and validates `pathPrefix.idx` and `pathPrefix.bin`.
    public init(pathPrefix: String) throws {
        self.pathPrefix = pathPrefix
        let index = try MappedFile(path: pathPrefix + ".idx")
        let data = try MappedFile(path: pathPrefix + ".bin")
        let header = try Self.readHeader(index)
        self.index = index
        self.data = data
        dtype = header.dtype
        sequenceCount = header.sequenceCount
        documentIndexCount = header.documentIndexCount
        try validate()
    }

    private static func readHeader(_ index: MappedFile) throws -> (dtype: TokenDType, sequenceCount: Int, documentIndexCount: Int) {
        let path = index.path
        guard index.count >= headerSize else {
            throw DatasetError("\(path): truncated index: \(index.count) bytes, the header alone needs \(headerSize)")
        }
        guard Array(index.bytes[0..<9]) == magic else {
            throw DatasetError("\(path): not a Megatron index file (bad magic; expected MMIDIDX\\0\\0)")
        }
        let version = index.load(UInt64.self, at: 9)
        guard version == 1 else { throw DatasetError("\(path): unsupported index version \(version) (expected 1)") }
        let code = index.bytes[17]
        guard let dtype = TokenDType(rawValue: code) else {
            throw DatasetError("\(path): unknown dtype code \(code) (expected 1...8)")
        }
        guard dtype.holdsTokens else {
            throw DatasetError("\(path): dtype code \(code) is \(dtype), but token ids must be integers; "
                + "this is not a token dataset (make one with megatron preprocess-data)")
        }
        let n = index.load(UInt64.self, at: 18)
        let d = index.load(UInt64.self, at: 26)
        guard n < UInt64(Int.max / 16), d < UInt64(Int.max / 16) else {
            throw DatasetError("\(path): implausible counts (sequences \(n), document indices \(d))")
        }
        let expected = headerSize + 12 * Int(n) + 8 * Int(d)
        guard index.count == expected else {
            let problem = index.count < expected ? "truncated index" : "index has trailing bytes"
            throw DatasetError("\(path): \(problem): \(index.count) bytes, but \(n) sequences and \(d) document indices need \(expected)")
        }
        return (dtype, Int(n), Int(d))
    }

    /// Checks that lengths, pointers and document indices agree with each other and with the `.bin` size.
    private func validate() throws {
        let path = index.path
        guard documentIndexCount >= 1 else { throw DatasetError("\(path): empty document index (needs at least the leading 0)") }
        guard documentIndex(0) == 0 else { throw DatasetError("\(path): document index must start at 0, found \(documentIndex(0))") }
        guard documentIndex(documentIndexCount - 1) == sequenceCount else {
            throw DatasetError("\(path): last document index \(documentIndex(documentIndexCount - 1)) != sequence count \(sequenceCount)")
        }
        var previous = 0
        for d in 1..<max(documentIndexCount, 1) {
            let value = documentIndex(d)
            guard value >= previous else { throw DatasetError("\(path): document index decreases at entry \(d) (\(previous) then \(value))") }
            previous = value
        }
        var expectedPointer = 0
        for i in 0..<sequenceCount {
            let length = Int(index.load(Int32.self, at: Self.headerSize + 4 * i))
            guard length >= 0 else { throw DatasetError("\(path): negative length \(length) for sequence \(i)") }
            guard pointer(i) == expectedPointer else {
                throw DatasetError("\(path): sequence \(i) starts at byte \(pointer(i)), expected \(expectedPointer) from the lengths before it")
            }
            expectedPointer += length * dtype.itemSize
        }
        guard expectedPointer == data.count else {
            throw DatasetError("\(data.path): holds \(data.count) bytes, but \(path) describes \(expectedPointer) (\(dtype) tokens)")
        }
    }

    /// Token count of sequence `i`.
    public func length(_ i: Int) -> Int { Int(lengthRaw(i)) }

    func lengthRaw(_ i: Int) -> Int32 { index.load(Int32.self, at: Self.headerSize + 4 * i) }

    /// Byte offset of sequence `i` in the `.bin`.
    public func pointer(_ i: Int) -> Int { Int(index.load(Int64.self, at: Self.headerSize + 4 * sequenceCount + 8 * i)) }

    /// Entry `d` of the document index: the sequence where document `d` starts (`d == documentCount`: the end).
    public func documentIndex(_ d: Int) -> Int {
        Int(index.load(Int64.self, at: Self.headerSize + 12 * sequenceCount + 8 * d))
    }

    /// All sequence lengths, as Megatron's `sequence_lengths` (int32).
    public var sequenceLengths: [Int32] { (0..<sequenceCount).map(lengthRaw) }

    /// All document-index entries, as Megatron's `document_indices` (int64).
    public var documentIndices: [Int64] { (0..<documentIndexCount).map { Int64(documentIndex($0)) } }

    /// Tokens `offset ..< offset+length` of sequence `i` (to its end when `length` is nil).
    public func sequence(_ i: Int, offset: Int = 0, length: Int? = nil) -> [Int32] {
        precondition(i >= 0 && i < sequenceCount, "sequence \(i) out of range 0..<\(sequenceCount)")
        let total = self.length(i)
        let count = length ?? (total - offset)
        precondition(offset >= 0 && count >= 0 && offset + count <= total,
                     "tokens \(offset)..<\(offset + count) out of range of sequence \(i) (length \(total))")
        return readTokens(at: pointer(i) + offset * dtype.itemSize, count: count)
    }

    private func readTokens(at byteOffset: Int, count: Int) -> [Int32] {
        let raw = data.bytes
        switch dtype {
        case .uint16: return (0..<count).map { Int32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset + 2 * $0, as: UInt16.self))) }
        case .int32: return (0..<count).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset + 4 * $0, as: Int32.self)) }
        case .uint8: return (0..<count).map { Int32(raw[byteOffset + $0]) }
        case .int8: return (0..<count).map { Int32(Int8(bitPattern: raw[byteOffset + $0])) }
        case .int16: return (0..<count).map { Int32(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset + 2 * $0, as: Int16.self))) }
        // Clamped, not truncated: an id beyond int32 stays out of every vocabulary, so the batch check reports it.
        case .int64: return (0..<count).map { Int32(clamping: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset + 8 * $0, as: Int64.self))) }
        case .float32, .float64: preconditionFailure("unreachable: float dtypes are refused on open")
        }
    }

    /// The raw `.bin` bytes (for concatenation by `IndexedDatasetBuilder.addIndex`).
    var binBytes: UnsafeRawBufferPointer { data.bytes }
}
