/// Writes a Megatron indexed dataset, byte-identical to Megatron's `IndexedDatasetBuilder`.
///
/// ```swift
/// let builder = try IndexedDatasetBuilder(binPath: "out_text_document.bin", dtype: .optimal(vocabSize: 50257))
/// try builder.addDocument([464, 3290, 50256], lengths: [3])   // one document of one sequence
/// try builder.addItem([11, 12]); try builder.addItem([13]); builder.endDocument()
/// try builder.finalize(idxPath: "out_text_document.idx")
/// ```
///
/// Tokens go to the `.bin` as they are added; lengths and document boundaries stay in memory until
/// `finalize` writes the `.idx`. A class: it owns an open file.
public final class IndexedDatasetBuilder {
    public let dtype: TokenDType
    public private(set) var sequenceLengths: [Int32] = []
    /// `[0, e1, e2, …]`: the sequence count at the end of each document.
    public private(set) var documentIndices: [Int64] = [0]
    private let bin: BinaryWriter

    public init(binPath: String, dtype: TokenDType) throws {
        guard dtype.holdsTokens else { throw DatasetError("\(binPath): token datasets use an integer dtype, not \(dtype)") }
        self.dtype = dtype
        bin = try BinaryWriter(path: binPath)
    }

    /// Appends one sequence (Megatron's `add_item`); call `endDocument()` to close the document.
    public func addItem<C: Collection>(_ tokens: C) throws where C.Element: BinaryInteger {
        let length = try sequenceLength(tokens.count)
        try writeTokens(tokens)
        sequenceLengths.append(length)
    }

    /// Closes the current document after `addItem` calls (Megatron's `end_document`).
    public func endDocument() {
        documentIndices.append(Int64(sequenceLengths.count))
    }

    /// Appends one document whose tokens split into sequences of `lengths` (Megatron's `add_document`).
    public func addDocument<C: Collection>(_ tokens: C, lengths: [Int]) throws where C.Element: BinaryInteger {
        guard lengths.allSatisfy({ $0 >= 0 }), lengths.reduce(0, +) == tokens.count else {
            throw DatasetError("\(bin.path): sequence lengths \(lengths) do not add up to the document's \(tokens.count) tokens")
        }
        let lengths32 = try lengths.map(sequenceLength)
        try writeTokens(tokens)
        sequenceLengths.append(contentsOf: lengths32)
        endDocument()
    }

    /// Appends a whole existing dataset (Megatron's `add_index`); its dtype must match.
    public func addIndex(pathPrefix: String) throws {
        let other = try IndexedDataset(pathPrefix: pathPrefix)
        guard other.dtype == dtype else {
            throw DatasetError("\(other.idxPath): dtype \(other.dtype) does not match the dataset being built (\(dtype))")
        }
        let offset = Int64(sequenceLengths.count)
        sequenceLengths.append(contentsOf: other.sequenceLengths)
        documentIndices.append(contentsOf: other.documentIndices.dropFirst().map { $0 + offset })
        try bin.write(other.binBytes)
    }

    /// Closes the `.bin` and writes the `.idx`.
    public func finalize(idxPath: String) throws {
        try bin.close()
        let idx = try BinaryWriter(path: idxPath)
        try idx.write(IndexedDataset.magic)
        try idx.write(littleEndian: [UInt64(1)])
        try idx.write([dtype.rawValue])
        try idx.write(littleEndian: [UInt64(sequenceLengths.count), UInt64(documentIndices.count)])
        try idx.write(littleEndian: sequenceLengths)
        var pointers = [Int64]()
        pointers.reserveCapacity(sequenceLengths.count)
        var pointer: Int64 = 0
        for length in sequenceLengths {
            pointers.append(pointer)
            pointer += Int64(length) * Int64(dtype.itemSize)
        }
        try idx.write(littleEndian: pointers)
        try idx.write(littleEndian: documentIndices)
        try idx.close()
    }

    private func writeTokens<C: Collection>(_ tokens: C) throws where C.Element: BinaryInteger {
        switch dtype {
        case .uint16: try bin.write(littleEndian: tokens.map { try checked(UInt16.self, $0) })
        case .int32: try bin.write(littleEndian: tokens.map { try checked(Int32.self, $0) })
        case .uint8: try bin.write(littleEndian: tokens.map { try checked(UInt8.self, $0) })
        case .int8: try bin.write(littleEndian: tokens.map { try checked(Int8.self, $0) })
        case .int16: try bin.write(littleEndian: tokens.map { try checked(Int16.self, $0) })
        case .int64: try bin.write(littleEndian: tokens.map { try checked(Int64.self, $0) })
        case .float32, .float64: preconditionFailure("unreachable: checked in init")
        }
    }

    /// The `.idx` stores lengths as int32, as Megatron's does.
    private func sequenceLength(_ count: Int) throws -> Int32 {
        guard let length = Int32(exactly: count) else {
            throw DatasetError("\(bin.path): a sequence of \(count) tokens is longer than the .idx format's int32 lengths allow")
        }
        return length
    }

    private func checked<T: FixedWidthInteger, V: BinaryInteger>(_ type: T.Type, _ value: V) throws -> T {
        guard let v = T(exactly: value) else {
            throw DatasetError("\(bin.path): token id \(value) does not fit the dataset dtype \(dtype)")
        }
        return v
    }
}
