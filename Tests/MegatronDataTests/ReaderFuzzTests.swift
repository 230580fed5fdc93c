import Foundation
import XCTest
@testable import MegatronData

/// Fuzz tests of the file readers a user's input reaches: `.idx/.bin`, `.npy` caches and JSONL. Thousands of
/// random and mutated inputs from a fixed seed; each must be refused with a `DatasetError` or give a result
/// that holds together (every sequence readable, every count matching its shape). A trap fails the run.
final class ReaderFuzzTests: XCTestCase {
    /// Where the cases are written: memory (`/dev/shm`) where there is one, since a disk turns thousands of
    /// small writes into seconds of waiting.
    private func scratch() throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue else {
            return try DatasetFixtures.scratch(self)
        }
        let dir = "/dev/shm/megatron-fuzz-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Plain stdio: Foundation's writes fsync, which thousands of cases cannot afford.
    private func write(_ bytes: [UInt8], _ path: String) throws {
        guard let file = fopen(path, "wb") else { throw DatasetError("cannot create \(path)") }
        defer { fclose(file) }
        guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw DatasetError("cannot write \(path)") }
    }

    /// Asserts that `body` either succeeds or throws a `DatasetError`; returns whether it succeeded.
    @discardableResult
    private func refusedOrValid(_ label: String, _ body: () throws -> Void) -> Bool {
        do {
            try body()
            return true
        } catch is DatasetError {
            return false
        } catch {
            XCTFail("\(label): \(type(of: error)) instead of a DatasetError: \(error)")
            return false
        }
    }

    func testIndexReaderRefusesOrReadsMutatedFiles() throws {
        let dir = try scratch()
        let bases = try ["indexed_u16", "indexed_i32", "corpus_a"].map { name in
            (idx: Array(try DatasetFixtures.bytes(DatasetFixtures.path(name + ".idx"))),
             bin: Array(try DatasetFixtures.bytes(DatasetFixtures.path(name + ".bin"))))
        }
        var inputs = FuzzInputs(seed: 16)
        var opened = 0
        for round in 0..<3000 {
            let base = bases[round % bases.count]
            let n = Int(base.idx[18]), d = Int(base.idx[26])
            // Header fields, then a length, a pointer and a document index.
            let fields = [9, 17, 18, 26, 34 + 4 * inputs.below(n), 34 + 4 * n + 8 * inputs.below(n), 34 + 12 * n + 8 * inputs.below(d)]
            let mutateBin = inputs.below(5) == 0
            try write(mutateBin ? base.idx : inputs.mutated(base.idx, fields: fields), dir + "/f.idx")
            try write(mutateBin ? inputs.mutated(base.bin) : base.bin, dir + "/f.bin")
            let ok = refusedOrValid("round \(round)") {
                let data = try IndexedDataset(pathPrefix: dir + "/f")
                for i in 0..<data.sequenceCount {
                    XCTAssertEqual(data.sequence(i).count, data.length(i))
                }
                XCTAssertEqual(data.documentIndices.last.map(Int.init), data.sequenceCount)
            }
            opened += ok ? 1 : 0
        }
        XCTAssertGreaterThan(opened, 100, "some mutations (of the .bin's token values) leave a valid dataset")
        XCTAssertLessThan(opened, 2900, "most mutations are refused")
    }

    func testNPYReaderRefusesOrReadsMutatedFiles() throws {
        let dir = try scratch()
        let path = dir + "/a.npy"
        var bases: [[UInt8]] = []
        for (descr, shape) in [("<i4", [7]), ("<i8", [5, 2]), ("<u4", [0]), ("<i2", [3, 1]), ("|u1", [9])] {
            try NPYFile.write(NPYFile.Array(descr: descr, shape: shape, values: (0..<shape.reduce(1, *)).map(Int64.init)), to: path)
            bases.append(Array(try DatasetFixtures.bytes(path)))
        }
        let dims = ["-1", "0", "3", "4611686018427387904", "9223372036854775807", "99999999999999999999", "x", ""]
        var inputs = FuzzInputs(seed: 17)
        var read = 0
        for round in 0..<3000 {
            var bytes = inputs.mutated(bases[round % bases.count], fields: [8])
            if inputs.below(3) == 0 {
                // A header written with crafted dimensions and dtype, and a random amount of data.
                let shape = (0..<inputs.below(3)).map { _ in dims[inputs.below(dims.count)] }.joined(separator: ", ")
                let descr = ["<i4", "<i8", "<f4", "|u1", ">i4"][inputs.below(5)]
                let header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shape),), }\n".utf8)
                bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count), 0] + header + inputs.bytes(inputs.below(64))
            }
            try write(bytes, path)
            read += refusedOrValid("round \(round)") {
                let array = try NPYFile.read(path)
                XCTAssertEqual(array.values.count, array.shape.reduce(1, *))
            } ? 1 : 0
        }
        XCTAssertGreaterThan(read, 50)
        XCTAssertLessThan(read, 2900)
    }

    private let jsonlLines = [
        #"{"text": "1 2 3"}"#, #"{"text": ["4 5", "6"], "title": "7"}"#, #"{"text": "999", "meta": {"a": [1, null, true]}}"#,
        #"{"title": "8", "text": "9 10 11 12"}"#, #"{"text": "\u0031 2"}"#,
    ]

    func testJSONLEncoderRefusesOrEncodesMutatedLines() {
        let encoder = DocumentEncoder(tokenizer: NullTokenizer(vocabSize: 1000), jsonKeys: ["text"], appendEOD: true)
        var inputs = FuzzInputs(seed: 18)
        var encoded = 0
        for round in 0..<5000 {
            let line = inputs.mutated(Array(jsonlLines[round % jsonlLines.count].utf8))
            encoded += refusedOrValid("round \(round)") {
                guard let document = try encoder.encode(line, lineNumber: 1, path: "fuzz.jsonl") else { return }
                XCTAssertEqual(document.ids[0].count, document.lengths[0].reduce(0, +))
                XCTAssertTrue(document.ids[0].allSatisfy { (0..<1000).contains($0) })
            } ? 1 : 0
        }
        XCTAssertGreaterThan(encoded, 200)
        XCTAssertLessThan(encoded, 4900)
    }

    /// Whole preprocess runs over files of mutated lines: an error, or a dataset that reads back whole.
    func testPreprocessRefusesOrWritesMutatedFiles() throws {
        let dir = try scratch()
        var inputs = FuzzInputs(seed: 19)
        var written = 0
        for round in 0..<200 {
            let lines = (0..<(1 + inputs.below(12))).map { _ -> [UInt8] in
                let line = Array(jsonlLines[inputs.below(jsonlLines.count)].utf8)
                return (inputs.below(3) == 0 ? inputs.mutated(line) : line) + [0x0A]
            }
            try write(lines.flatMap { $0 }, dir + "/in.jsonl")
            var options = PreprocessOptions(inputs: [dir + "/in.jsonl"], outputPrefix: dir + "/out")
            options.workers = 1 + inputs.below(2)
            options.skipMalformed = inputs.below(2) == 0
            written += refusedOrValid("round \(round)") {
                let report = try Preprocessor(options: options, tokenizer: NullTokenizer(vocabSize: 1000)).run()
                let data = try IndexedDataset(pathPrefix: dir + "/out_text_document")
                XCTAssertEqual(data.documentCount, report.documents)
                for i in 0..<data.sequenceCount { XCTAssertTrue(data.sequence(i).allSatisfy { $0 >= 0 && $0 < 1000 }) }
            } ? 1 : 0
        }
        XCTAssertGreaterThan(written, 20)
        XCTAssertLessThan(written, 200)
    }
}
