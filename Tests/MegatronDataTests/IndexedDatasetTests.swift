import Foundation
import XCTest
@testable import MegatronData

final class IndexedDatasetTests: XCTestCase {
    private func documents(_ key: String) throws -> [[[Int]]] {
        try XCTUnwrap(DatasetFixtures.json("indexed_cases.json")[key] as? [[[Int]]])
    }

    private func write(_ docs: [[[Int]]], dtype: TokenDType, prefix: String, viaItems: Bool) throws {
        let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: dtype)
        for sentences in docs {
            if viaItems {
                for s in sentences { try builder.addItem(s) }
                builder.endDocument()
            } else {
                try builder.addDocument(sentences.flatMap { $0 }, lengths: sentences.map(\.count))
            }
        }
        try builder.finalize(idxPath: prefix + ".idx")
    }

    private func assertSameFiles(_ ours: String, _ megatron: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for ext in [".bin", ".idx"] {
            XCTAssertEqual(try DatasetFixtures.bytes(ours + ext), try DatasetFixtures.bytes(DatasetFixtures.path(megatron) + ext),
                           "\(megatron)\(ext) differs from Megatron's", file: file, line: line)
        }
    }

    func testBuilderWritesMegatronBytesForUInt16Documents() throws {
        let dir = try DatasetFixtures.scratch(self)
        try write(documents("u16"), dtype: .uint16, prefix: dir + "/a", viaItems: false)
        try assertSameFiles(dir + "/a", "indexed_u16")
        try write(documents("u16"), dtype: .uint16, prefix: dir + "/b", viaItems: true)
        try assertSameFiles(dir + "/b", "indexed_u16_items")
    }

    func testBuilderWritesMegatronBytesForInt32() throws {
        let dir = try DatasetFixtures.scratch(self)
        try write(documents("i32"), dtype: .int32, prefix: dir + "/a", viaItems: false)
        try assertSameFiles(dir + "/a", "indexed_i32")
    }

    func testAddIndexConcatenatesLikeMegatron() throws {
        let dir = try DatasetFixtures.scratch(self)
        let builder = try IndexedDatasetBuilder(binPath: dir + "/m.bin", dtype: .uint16)
        for sentences in try documents("merged_prefix") {
            try builder.addDocument(sentences.flatMap { $0 }, lengths: sentences.map(\.count))
        }
        try builder.addIndex(pathPrefix: DatasetFixtures.path("indexed_u16"))
        try builder.finalize(idxPath: dir + "/m.idx")
        try assertSameFiles(dir + "/m", "indexed_merged")
        let wrongType = try IndexedDatasetBuilder(binPath: dir + "/w.bin", dtype: .int32)
        XCTAssertThrowsError(try wrongType.addIndex(pathPrefix: DatasetFixtures.path("indexed_u16"))) {
            XCTAssertTrue("\($0)".contains("dtype uint16 does not match"), "\($0)")
        }
    }

    func testReaderReturnsMegatronSequencesAndDocuments() throws {
        let docs = try documents("i32")
        let data = try IndexedDataset(pathPrefix: DatasetFixtures.path("indexed_i32"))
        XCTAssertEqual(data.dtype, .int32)
        XCTAssertEqual(data.documentCount, docs.count)
        let sentences = docs.flatMap { $0 }
        XCTAssertEqual(data.sequenceCount, sentences.count)
        for (i, s) in sentences.enumerated() { XCTAssertEqual(data.sequence(i).map(Int.init), s) }
        var boundaries = [0]
        for d in docs { boundaries.append(boundaries.last! + d.count) }
        XCTAssertEqual(data.documentIndices.map(Int.init), boundaries)
        XCTAssertEqual(data.sequence(0, offset: 1, length: 2).map(Int.init), Array(sentences[0][1..<3]))
    }

    func testOptimalDTypeFollowsMegatron() {
        XCTAssertEqual(TokenDType.optimal(vocabSize: 50257), .uint16)
        XCTAssertEqual(TokenDType.optimal(vocabSize: 65_499), .uint16)
        XCTAssertEqual(TokenDType.optimal(vocabSize: 65_500), .int32)
        XCTAssertEqual(TokenDType.uint16.rawValue, 8)
    }

    private func corrupt(_ edit: (inout Data) -> Void, binEdit: ((inout Data) -> Void)? = nil) throws -> String {
        let dir = try DatasetFixtures.scratch(self)
        var idx = try DatasetFixtures.bytes(DatasetFixtures.path("indexed_u16.idx"))
        var bin = try DatasetFixtures.bytes(DatasetFixtures.path("indexed_u16.bin"))
        edit(&idx)
        binEdit?(&bin)
        try idx.write(to: URL(fileURLWithPath: dir + "/c.idx"))
        try bin.write(to: URL(fileURLWithPath: dir + "/c.bin"))
        return dir + "/c"
    }

    private func assertOpenFails(_ prefix: String, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try IndexedDataset(pathPrefix: prefix), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(text), "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(prefix), "error should name the file: \(error)", file: file, line: line)
        }
    }

    func testReaderRejectsDamagedFilesWithClearErrors() throws {
        assertOpenFails(try corrupt { $0.removeLast(5) }, containing: "truncated index")
        assertOpenFails(try corrupt { $0 = $0.prefix(20) }, containing: "truncated index")
        assertOpenFails(try corrupt { $0[0] = 0x41 }, containing: "bad magic")
        assertOpenFails(try corrupt { $0[9] = 2 }, containing: "unsupported index version 2")
        assertOpenFails(try corrupt { $0[17] = 9 }, containing: "unknown dtype code 9")
        // Float dtypes are valid in Megatron's format but never token ids: refused on open, not trapped on read.
        assertOpenFails(try corrupt { $0[17] = 7 }, containing: "dtype code 7 is float32, but token ids must be integers")
        assertOpenFails(try corrupt { $0[17] = 6 }, containing: "float64")
        // A pointer past the .bin, and a length that would need more bytes than the .bin holds.
        assertOpenFails(try corrupt { $0[34 + 4 * 14 + 8 * 3] &+= 2 }, containing: "sequence 3 starts at byte")
        assertOpenFails(try corrupt({ _ in }, binEdit: { $0.append(contentsOf: [0, 0]) }), containing: "holds 90 bytes")
        assertOpenFails(try corrupt({ _ in }, binEdit: { $0.removeLast(2) }), containing: "holds 86 bytes")
        // First sequence length changed: pointers no longer agree with lengths.
        assertOpenFails(try corrupt { $0[34] &+= 1 }, containing: "expected")
        assertOpenFails(try corrupt { $0.append(0) }, containing: "trailing bytes")
        XCTAssertThrowsError(try IndexedDataset(pathPrefix: "/nonexistent/x")) { XCTAssertTrue("\($0)".contains("/nonexistent/x.idx")) }
        let noBin = try corrupt { _ in }
        try FileManager.default.removeItem(atPath: noBin + ".bin")
        assertOpenFails(noBin, containing: "cannot open \(noBin).bin")
    }
}
