import Foundation
import XCTest
@testable import MegatronData

/// `megatron preprocess-data`'s library side against Megatron's `tools/preprocess_data.py` Encoder.
final class PreprocessDataTests: XCTestCase {
    private func run(_ options: PreprocessOptions, tokenizer: any Tokenizer = SpaceSeparatedIDsTokenizer()) throws -> PreprocessReport {
        try Preprocessor(options: options, tokenizer: tokenizer).run()
    }

    private func assertSameFiles(_ ours: String, _ megatron: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for ext in [".bin", ".idx"] {
            XCTAssertEqual(try DatasetFixtures.bytes(ours + ext), try DatasetFixtures.bytes(DatasetFixtures.path(megatron) + ext),
                           "\(megatron)\(ext)", file: file, line: line)
        }
    }

    func testOutputIsByteIdenticalToMegatronsForEveryKey() throws {
        for (appendEOD, name) in [(false, "plain"), (true, "eod")] {
            for workers in [1, 3] {
                let dir = try DatasetFixtures.scratch(self)
                var options = PreprocessOptions(inputs: [DatasetFixtures.path("preprocess_input.jsonl")], outputPrefix: dir + "/out")
                options.jsonKeys = ["text", "title"]
                options.appendEOD = appendEOD
                options.workers = workers
                let report = try run(options)
                XCTAssertEqual(report.documents, 12)
                try assertSameFiles(dir + "/out_text_document", "preprocess_\(name)_text_document")
                try assertSameFiles(dir + "/out_title_document", "preprocess_\(name)_title_document")
                // Nothing but the four outputs is left behind.
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
                               ["out_text_document.bin", "out_text_document.idx", "out_title_document.bin", "out_title_document.idx"])
            }
        }
    }

    func testOutputReadsBackAsTheTokenizedDocuments() throws {
        let dir = try DatasetFixtures.scratch(self)
        let input = dir + "/in.jsonl"
        let texts = ["5 6 7", "8", "9 10 11 12"]
        try texts.map { "{\"text\": \"\($0)\"}\n" }.joined().write(toFile: input, atomically: true, encoding: .utf8)
        var options = PreprocessOptions(inputs: [input], outputPrefix: dir + "/o")
        options.appendEOD = true
        _ = try run(options)
        let data = try IndexedDataset(pathPrefix: dir + "/o_text_document")
        XCTAssertEqual(data.dtype, .uint16)
        XCTAssertEqual(data.documentCount, 3)
        for (i, text) in texts.enumerated() {
            XCTAssertEqual(data.sequence(i).map(Int.init), text.split(separator: " ").map { Int($0)! } + [999])
        }
    }

    func testMalformedLineStopsWithItsLineNumberOrIsSkipped() throws {
        let dir = try DatasetFixtures.scratch(self)
        let input = dir + "/bad.jsonl"
        try "{\"text\": \"1 2\"}\n{\"text\": \"3\"}\n{\"text\": 3 4}\n{\"title\": \"5\"}\n{\"text\": \"6\"}\n"
            .write(toFile: input, atomically: true, encoding: .utf8)
        var options = PreprocessOptions(inputs: [input], outputPrefix: dir + "/o")
        options.workers = 2
        XCTAssertThrowsError(try run(options)) { error in
            XCTAssertTrue("\(error)".contains("bad.jsonl line 3: not valid JSON"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["bad.jsonl"], "no half-written dataset left")
        options.skipMalformed = true
        let report = try run(options)
        XCTAssertEqual(report.documents, 3)
        XCTAssertEqual(report.skippedLines.count, 2)
        XCTAssertTrue(report.skippedLines[1].contains("line 4: no key \"text\""), report.skippedLines[1])
        let data = try IndexedDataset(pathPrefix: dir + "/o_text_document")
        XCTAssertEqual((0..<data.sequenceCount).map { data.sequence($0).map(Int.init) }, [[1, 2], [3], [6]])
    }

    func testGzipInputGivesTheSameOutput() throws {
        let dir = try DatasetFixtures.scratch(self)
        let gz = dir + "/in.jsonl.gz"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "gzip -c '\(DatasetFixtures.path("preprocess_input.jsonl"))' > '\(gz)'"]
        try process.run()
        process.waitUntilExit()
        try XCTSkipUnless(process.terminationStatus == 0, "gzip is not available")
        var options = PreprocessOptions(inputs: [gz], outputPrefix: dir + "/out")
        options.jsonKeys = ["text", "title"]
        _ = try run(options)
        try assertSameFiles(dir + "/out_text_document", "preprocess_plain_text_document")
        // A corrupt archive is reported, not silently truncated.
        try Data([0x1F, 0x8B, 0x08, 0x00, 0x01, 0x02]).write(to: URL(fileURLWithPath: dir + "/bad.gz"))
        XCTAssertThrowsError(try run(PreprocessOptions(inputs: [dir + "/bad.gz"], outputPrefix: dir + "/x"))) {
            XCTAssertTrue("\($0)".contains("gzip failed"), "\($0)")
        }
    }

    func testPartitionsReproduceMegatronsDocumentOrder() throws {
        let dir = try DatasetFixtures.scratch(self)
        let input = dir + "/in.jsonl"
        try (0..<7).map { "{\"text\": \"\($0 + 1)\"}\n" }.joined().write(toFile: input, atomically: true, encoding: .utf8)
        var options = PreprocessOptions(inputs: [input], outputPrefix: dir + "/p")
        options.partitions = 3
        _ = try run(options)
        let data = try IndexedDataset(pathPrefix: dir + "/p_text_document")
        // Lines dealt round-robin to 3 parts, parts concatenated in order: lines 1,4,7 | 2,5 | 3,6.
        XCTAssertEqual((0..<7).map { Int(data.sequence($0)[0]) }, [1, 4, 7, 2, 5, 3, 6])
        options.keepSequentialSamples = true
        options.outputPrefix = dir + "/s"
        _ = try run(options)
        let sequential = try IndexedDataset(pathPrefix: dir + "/s_text_document")
        XCTAssertEqual((0..<7).map { Int(sequential.sequence($0)[0]) }, [1, 2, 3, 4, 5, 6, 7])
    }

    /// GPT2BPETokenizer end to end against Megatron's Encoder; waits for the tokenizers to land.
    func testGPT2BPEOutputMatchesMegatron() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shared = root.deletingLastPathComponent().appendingPathComponent("shared/data").path
        try XCTSkipUnless(FileManager.default.fileExists(atPath: shared), "\(shared) is absent: shared test data not available")
        let bpe = shared + "/tokenizers/bytelevel-bpe-8k"
        let tokenizer: any Tokenizer
        do {
            tokenizer = try buildTokenizer(TokenizerOptions(type: .gpt2BPE, vocabFile: bpe + "/vocab.json", mergeFile: bpe + "/merges.txt"))
        } catch {
            throw XCTSkip("GPT2BPETokenizer is not available yet (\(error))")
        }
        let dir = try DatasetFixtures.scratch(self)
        let lines = try String(contentsOfFile: shared + "/corpus/docs-3mb.jsonl", encoding: .utf8).split(separator: "\n").prefix(20)
        try lines.map { $0 + "\n" }.joined().write(toFile: dir + "/first20.jsonl", atomically: true, encoding: .utf8)
        var options = PreprocessOptions(inputs: [dir + "/first20.jsonl"], outputPrefix: dir + "/bpe")
        options.appendEOD = true
        _ = try run(options, tokenizer: tokenizer)
        try assertSameFiles(dir + "/bpe_text_document", "preprocess_bpe8k_first20_text_document")
    }
}
