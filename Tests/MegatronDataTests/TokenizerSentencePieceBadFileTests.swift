import Foundation
import XCTest

@testable import MegatronData

/// SentencePiece model files that are missing, not protobuf, truncated, corrupt or of a kind not supported: each
/// a thrown error naming the flag and the file; and mutated models either refused or encoding within their
/// vocabulary, never a trap.
final class TokenizerSentencePieceBadFileTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = try DatasetFixtures.scratch(self) }

    /// Protocol-buffer bytes of a hand-made ModelProto.
    private enum Proto {
        static func varint(_ value: UInt64) -> [UInt8] {
            var v = value, out: [UInt8] = []
            while v >= 0x80 {
                out.append(UInt8(v & 0x7F) | 0x80)
                v >>= 7
            }
            return out + [UInt8(v)]
        }
        static func field(_ number: Int, _ bytes: [UInt8]) -> [UInt8] {
            varint(UInt64(number << 3 | 2)) + varint(UInt64(bytes.count)) + bytes
        }
        static func field(_ number: Int, varint value: UInt64) -> [UInt8] { varint(UInt64(number << 3)) + varint(value) }
        static func piece(_ text: String, _ score: Float = 0, type: UInt64 = 1) -> [UInt8] {
            let bits = score.bitPattern
            let float = varint(UInt64(2 << 3 | 5)) + (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
            return field(1, field(1, Array(text.utf8)) + float + self.field(3, varint: type))
        }
        /// `<unk>`, `<s>`, `</s>` and a few BPE pieces, then `extra` fields.
        static func model(_ extra: [UInt8] = [], modelType: UInt64 = 2, pieces: [[UInt8]]? = nil) -> [UInt8] {
            let standard = [piece("<unk>", type: 2), piece("<s>", type: 3), piece("</s>", type: 3),
                            piece("\u{2581}", -1), piece("a", -2), piece("b", -3), piece("\u{2581}a", -4), piece("ab", -5)]
            return (pieces ?? standard).flatMap { $0 } + field(2, field(3, varint: modelType)) + extra
        }
    }

    private func write(_ bytes: [UInt8], _ name: String = "tok.model") throws -> String {
        let path = dir + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func assertRefused(_ bytes: [UInt8], _ mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write(bytes)
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .llama2, tokenizerModel: path)), file: file, line: line) { error in
            XCTAssertTrue(error is TokenizerError, "\(error)", file: file, line: line)
            for text in ["--tokenizer-model", path, mentions] {
                XCTAssertTrue("\(error)".contains(text), "\(error) should mention \(text)", file: file, line: line)
            }
        }
    }

    func testHandMadeModelEncodes() throws {
        let tok = try buildTokenizer(TokenizerOptions(type: .llama2, tokenizerModel: try write(Proto.model())))
        XCTAssertEqual(tok.vocabSize, 8)
        XCTAssertEqual(tok.eod, 2)
        XCTAssertEqual(tok.bos, 1)
        XCTAssertNil(tok.pad)
        // "▁a" merges first (score -4 beats "ab" at -5); "c" is unknown; "ba" is no piece.
        XCTAssertEqual(try tok.encode("ab ba c"), [6, 5, 3, 5, 4, 3, 0])
        XCTAssertEqual(tok.decode([6, 5, 3, 5, 4, 3, 0]), "ab ba  \u{2047} ")
    }

    func testMissingAndNonModelFilesAreNamed() throws {
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .gptSentencePiece))) { error in
            XCTAssertTrue("\(error)".contains("GPTSentencePieceTokenizer needs --tokenizer-model"), "\(error)")
        }
        try assertRefused([], "no pieces")
        try assertRefused(Array(#"{"model": {"type": "BPE"}}"#.utf8), "is not a SentencePiece model")
        let missing = dir + "/none.model"
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .llama2, tokenizerModel: missing))) { error in
            XCTAssertTrue("\(error)".contains("--tokenizer-model \(missing) does not exist"), "\(error)")
        }
        XCTAssertThrowsError(try buildTokenizer(TokenizerOptions(type: .llama2, tokenizerModel: dir))) { error in
            XCTAssertTrue("\(error)".contains("is a directory"), "\(error)")
        }
        let real = try [UInt8](Data(contentsOf: TokenizerFixtures.url("sentencepiece/bpe_llama.model")))
        try assertRefused(Array(real.prefix(real.count / 2 + 1)), "is not a SentencePiece model: ")
    }

    func testModelsSentencepieceRefusesAreRefused() throws {
        let unk = Proto.piece("<unk>", type: 2), eos = Proto.piece("</s>", type: 3)
        try assertRefused(Proto.model(modelType: 9), "model_type is 9")
        try assertRefused(Proto.model(modelType: 3), "WORD model")
        try assertRefused(Proto.model(modelType: 4), "CHAR model")
        try assertRefused(Proto.model(pieces: [eos, Proto.piece("a")]), "no unknown piece")
        try assertRefused(Proto.model(pieces: [unk, eos, Proto.piece("<u2>", type: 2)]), "two unknown pieces")
        try assertRefused(Proto.model(pieces: [unk, eos, Proto.piece("a"), Proto.piece("a", type: 4)]), "\"a\" is defined twice")
        try assertRefused(Proto.model(pieces: [unk, eos, Proto.piece("")]), "piece 2 is empty")
        try assertRefused(Proto.model(pieces: [unk, eos, Proto.piece("a", type: 9)]), "unknown type 9")
        try assertRefused(Proto.model(pieces: [unk, eos, Proto.piece("<0x41>", type: 6)]), "byte_fallback is false")
        let byteFallback = Proto.field(2, Proto.field(35, varint: 1))
        try assertRefused(Proto.model(byteFallback, pieces: [unk, eos, Proto.piece("<0x41>", type: 6)]), "no byte piece <0x00>")
        try assertRefused(Proto.model(byteFallback, pieces: [unk, eos, Proto.piece("<0x4g>", type: 6)]), "<0x4g>")
        try assertRefused(Proto.model(pieces: [unk, Proto.piece("a")]), "no end-of-sentence piece")
        try assertRefused(Proto.model(Proto.field(3, Proto.field(2, [9, 0, 0, 0, 1, 2]))), "precompiled charsmap")
        try assertRefused(Proto.model(Proto.field(5, Proto.field(2, [4, 0, 0, 0, 1, 2, 3, 4, 0]))), "denormalizer_spec")
        try assertRefused(Proto.model() + [0x08], "truncated varint")
        try assertRefused(Proto.model() + Proto.varint(3 << 3 | 2) + Proto.varint(1000), "past the end")
    }

    /// Every cut of a real model, and random mutations: refused with an error naming the file, or a model
    /// whose ids lie in its vocabulary.
    func testTruncatedAndMutatedModelsThrowOrEncode() throws {
        var fuzz = FuzzInputs(seed: 11)
        let texts = ["", "Hello  world\n", " ａｂ ﬁ 😀 <s> [INST]x\u{00a0}y", String(repeating: "ab ", count: 20)]
        for name in TokenizerSentencePieceTests.models {
            let model = try [UInt8](Data(contentsOf: TokenizerFixtures.url("sentencepiece/\(name).model")))
            let cuts = Array(stride(from: 0, to: model.count, by: 97)) + Array((model.count - 24)..<model.count)
            let inputs = cuts.map { Array(model.prefix($0)) } + (0..<60).map { _ in fuzz.mutated(model) }
            var loaded = 0
            for bytes in inputs {
                let path = try write(bytes)
                let tok: any Tokenizer
                do {
                    tok = try SentencePieceTokenizer(modelFile: path)
                } catch {
                    XCTAssertTrue(error is TokenizerError && "\(error)".contains(path), "\(error)")
                    continue
                }
                loaded += 1
                for text in texts {
                    let ids = try tok.encode(text)
                    XCTAssertTrue(ids.allSatisfy { (0..<tok.vocabSize).contains($0) }, "\(name): \(ids)")
                    _ = tok.decode(ids + [-1, tok.vocabSize, 0, tok.vocabSize - 1])
                }
            }
            XCTAssertGreaterThan(loaded, 0, "\(name): some mutations should still load")
        }
    }
}
