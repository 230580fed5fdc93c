import Foundation
import XCTest
@testable import MegatronData

/// `preprocess-data` on bad input: every case an error naming the file (and line), never a trap, and no
/// dataset left behind. Megatron stops with a Python traceback on a malformed line; we name the line.
final class PreprocessBadInputTests: XCTestCase {
    private func assertFails(_ lines: String, tokenizer: any Tokenizer = NullTokenizer(vocabSize: 1000),
                             keys: [String] = ["text"], mentions: [String],
                             file: StaticString = #filePath, line: UInt = #line) throws {
        try assertFails(Data(lines.utf8), tokenizer: tokenizer, keys: keys, mentions: mentions, file: file, line: line)
    }

    private func assertFails(_ bytes: Data, name: String = "in.jsonl", tokenizer: any Tokenizer = NullTokenizer(vocabSize: 1000),
                             keys: [String] = ["text"], mentions: [String],
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try DatasetFixtures.scratch(self)
        try bytes.write(to: URL(fileURLWithPath: dir + "/" + name))
        var options = PreprocessOptions(inputs: [dir + "/" + name], outputPrefix: dir + "/out")
        options.jsonKeys = keys
        options.workers = 2
        XCTAssertThrowsError(try Preprocessor(options: options, tokenizer: tokenizer).run(), file: file, line: line) { error in
            for text in mentions + [dir + "/" + name] {
                XCTAssertTrue("\(error)".contains(text), "\(error) should mention \(text)", file: file, line: line)
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [name], "nothing written", file: file, line: line)
    }

    func testMalformedLinesAreNamedByLine() throws {
        try assertFails("{\"text\": \"1\"}\n{\"text\": \"2\"\n", mentions: ["line 2: not valid JSON"])
        try assertFails("{\"text\": \"1\"}\n[1, 2]\n", mentions: ["line 2: expected a JSON object, found a list"])
        try assertFails("{\"text\": \"1\"}\n{\"title\": \"2\", \"id\": 3}\n",
                        mentions: ["line 2: no key \"text\" (the line has: id, title)", "--json-keys"])
        try assertFails("{\"text\": 5}\n", mentions: ["line 1: \"text\" must be a string or a list of strings, found a number"])
        try assertFails("{\"text\": null}\n", mentions: ["found null"])
        try assertFails("{\"text\": [\"1\", 2]}\n", mentions: ["found a list"])
        try assertFails("{\"text\": \"1\", \"b\": {}}\n", keys: ["text", "b"], mentions: ["\"b\" must be", "found an object"])
        try assertFails(String(repeating: "[", count: 2000) + "\n", mentions: ["line 1: not valid JSON"])
    }

    func testInvalidUTF8IsNamedWithItsByte() throws {
        var bytes = Data("{\"text\": \"1\"}\n{\"text\": \"ab".utf8)
        bytes.append(0xFF)
        bytes.append(contentsOf: Data("\"}\n".utf8))
        try assertFails(bytes, mentions: ["line 2: invalid UTF-8 at byte 12"])
    }

    /// NullTokenizer text that is not ids, or ids outside its vocabulary, names the text.
    func testNullTokenizerTextThatIsNotIdsIsNamed() throws {
        try assertFails("{\"text\": \"1 2\"}\n{\"text\": \"1 two 3\"}\n", mentions: ["line 2", "\"two\"", "not an integer token id"])
        try assertFails("{\"text\": \"1  2\"}\n", mentions: ["line 1", "\"\" in \"1  2\""])
        try assertFails("{\"text\": \"1 1000\"}\n", mentions: ["line 1", "token id 1000", "0..<1000", "--vocab-size"])
        try assertFails("{\"text\": \"-3\"}\n", mentions: ["token id -3"])
        let tok = NullTokenizer(vocabSize: 10)
        XCTAssertEqual(try tok.encode("1 2\n"), [1, 2], "int() accepts surrounding whitespace")
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .null, vocabSize: 0))) {
            XCTAssertTrue("\($0)".contains("positive --vocab-size"), "\($0)")
        }
    }

    func testEmptyInputIsAnError() throws {
        try assertFails("", mentions: ["no documents", "empty"])
        try assertFails("\n  \n\n", mentions: ["no documents"])
        let dir = try DatasetFixtures.scratch(self)
        try "{\"text\": 1}\n".write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        var options = PreprocessOptions(inputs: [dir + "/in.jsonl"], outputPrefix: dir + "/out")
        options.skipMalformed = true
        XCTAssertThrowsError(try Preprocessor(options: options, tokenizer: NullTokenizer(vocabSize: 10)).run()) {
            XCTAssertTrue("\($0)".contains("all 1 lines were malformed"), "\($0)")
        }
    }

    /// Blank lines hold no document and are passed over (Megatron's json.loads raises on them).
    func testBlankLinesAreSkipped() throws {
        let dir = try DatasetFixtures.scratch(self)
        try "{\"text\": \"1 2\"}\n\n   \r\n{\"text\": \"3\"}".write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        let report = try Preprocessor(options: PreprocessOptions(inputs: [dir + "/in.jsonl"], outputPrefix: dir + "/o"),
                                      tokenizer: NullTokenizer(vocabSize: 10)).run()
        XCTAssertEqual(report.documents, 2)
        let data = try IndexedDataset(pathPrefix: dir + "/o_text_document")
        XCTAssertEqual((0..<data.sequenceCount).map { data.sequence($0).map(Int.init) }, [[1, 2], [3]])
    }

    func testMissingDirectoryAndUnreadableInputsAreNamed() throws {
        let dir = try DatasetFixtures.scratch(self)
        let tok = NullTokenizer(vocabSize: 10)
        func fails(_ inputs: [String], _ prefix: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Preprocessor(options: PreprocessOptions(inputs: inputs, outputPrefix: prefix), tokenizer: tok).run(),
                                 file: file, line: line) {
                XCTAssertTrue("\($0)".contains(text), "\($0)", file: file, line: line)
            }
        }
        try "{\"text\": \"1\"}\n".write(toFile: dir + "/in.jsonl", atomically: true, encoding: .utf8)
        fails([dir + "/missing.jsonl"], dir + "/o", "--input \(dir)/missing.jsonl does not exist")
        fails([dir], dir + "/o", "is a directory")
        fails([dir + "/in.jsonl"], dir + "/no/such/o", "--output-prefix \(dir)/no/such/o: the directory \(dir)/no/such does not exist")
        try FileManager.default.createDirectory(atPath: dir + "/ro", withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o555])
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir + "/ro") }
        if access(dir + "/ro", W_OK) != 0 {   // root may write anywhere
            fails([dir + "/in.jsonl"], dir + "/ro/o", "--output-prefix \(dir)/ro/o: the directory \(dir)/ro is not writable")
        }
    }

    /// A truncated archive, and a file named .gz that is not one, end in gzip's failure named by file.
    func testCorruptOrTruncatedGzipIsAnError() throws {
        let dir = try DatasetFixtures.scratch(self)
        let plain = dir + "/in.jsonl"
        try (0..<2000).map { "{\"text\": \"\($0 % 10) \($0 % 7)\"}\n" }.joined().write(toFile: plain, atomically: true, encoding: .utf8)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/sh")
        gzip.arguments = ["-c", "gzip -c '\(plain)' > '\(plain).gz'"]
        try gzip.run()
        gzip.waitUntilExit()
        try XCTSkipUnless(gzip.terminationStatus == 0, "gzip is not available")
        let archive = try Data(contentsOf: URL(fileURLWithPath: plain + ".gz"))
        try assertFails(archive.prefix(archive.count * 2 / 3), name: "cut.jsonl.gz", mentions: ["gzip failed", "corrupt or truncated"])
        try assertFails(Data("{\"text\": \"1\"}\n".utf8), name: "plain.jsonl.gz", mentions: ["gzip failed"])
    }
}
