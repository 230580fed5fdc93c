import Foundation
import XCTest
@testable import MegatronData

/// Tokenizer files that are missing, malformed, of the wrong types or inconsistent: each an error naming the
/// flag and file, never a trap or a silently smaller vocabulary.
final class TokenizerBadFileTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = try DatasetFixtures.scratch(self) }

    private func file(_ name: String, _ text: String) throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func assertFails(_ options: TokenizerOptions, _ mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try buildTokenizer(options), file: file, line: line) { error in
            XCTAssertTrue(error is TokenizerError, "\(error)", file: file, line: line)
            for text in mentions {
                XCTAssertTrue("\(error)".contains(text), "\(error) should mention \(text)", file: file, line: line)
            }
        }
    }

    /// A byte-level vocabulary of the bytes `a`, `b`, the merge `a b` and `<|endoftext|>`.
    private let goodVocab = #"{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}"#

    private func gpt2(_ vocab: String, _ merges: String) throws -> TokenizerOptions {
        TokenizerOptions(type: .gpt2BPE, vocabFile: try file("vocab.json", vocab), mergeFile: try file("merges.txt", merges))
    }

    func testGPT2FilesThatWorkGiveIds() throws {
        let tok = try buildTokenizer(try gpt2(goodVocab, "#version: 0.2\na b\n"))
        XCTAssertEqual(try tok.encode("abab<|endoftext|>"), [2, 2, 3])
    }

    func testGPT2VocabAndMergeProblemsAreNamed() throws {
        let vocab = dir + "/vocab.json", merges = dir + "/merges.txt"
        assertFails(TokenizerOptions(type: .gpt2BPE, vocabFile: dir + "/none.json", mergeFile: merges),
                    ["--vocab-file \(dir)/none.json does not exist"])
        assertFails(try gpt2("{\"a\": 0,", "a b\n"), ["--vocab-file \(vocab) is not valid JSON"])
        assertFails(try gpt2("[1, 2]", "a b\n"), ["--vocab-file \(vocab) must be a JSON object"])
        assertFails(try gpt2("{}", "a b\n"), ["--vocab-file \(vocab) is empty"])
        assertFails(try gpt2(#"{"a": "zero", "<|endoftext|>": 1}"#, "a b\n"), ["\"a\" has id zero, not an integer"])
        assertFails(try gpt2(#"{"a": -1, "<|endoftext|>": 1}"#, "a b\n"), ["\"a\" has id -1"])
        assertFails(try gpt2(#"{"a": 1000000000000, "<|endoftext|>": 1}"#, "a b\n"), ["has id 1000000000000"])
        assertFails(try gpt2(#"{"a": 0}"#, "a b\n"), ["--vocab-file \(vocab) has no <|endoftext|>"])
        assertFails(TokenizerOptions(type: .gpt2BPE, vocabFile: try file("vocab.json", goodVocab), mergeFile: dir),
                    ["--merge-file \(dir) cannot be read"])
        assertFails(try gpt2(goodVocab, "a b c\n"), ["--merge-file \(merges): line 1 is not `left right`"])
        assertFails(try gpt2(goodVocab, "a x\n"), ["--merge-file \(merges)", "(a x) uses a token missing", vocab])
        assertFails(try gpt2(goodVocab, "b a\n"), ["makes ba, missing from the vocabulary"])
    }

    func testHuggingFaceProblemsAreNamed() throws {
        func hf(_ json: String) throws -> TokenizerOptions {
            TokenizerOptions(type: .huggingFace, tokenizerModel: try file("tokenizer.json", json))
        }
        let path = dir + "/tokenizer.json"
        let model = #""model": {"type": "BPE", "vocab": {"a": 0, "</s>": 1}, "merges": []}"#
        XCTAssertNoThrow(try buildTokenizer(try hf(#"{"#
            + model + #", "added_tokens": [{"id": 1, "content": "</s>", "special": true}]}"#)))
        assertFails(TokenizerOptions(type: .huggingFace, tokenizerModel: dir + "/absent"), ["--tokenizer-model \(dir)/absent does not exist"])
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: false)
        assertFails(TokenizerOptions(type: .huggingFace, tokenizerModel: dir + "/empty"), ["\(dir)/empty/tokenizer.json does not exist"])
        assertFails(try hf("{\"model\": "), ["\(path) is not valid JSON"])
        assertFails(try hf("[]"), ["\(path) is not a tokenizer.json object"])
        assertFails(try hf(#"{"model": {"type": "BPE", "vocab": {"a": 1.5}}}"#), [path, "model.vocab: token \"a\" has id 1.5"])
        assertFails(try hf(#"{"model": {"type": "BPE", "vocab": []}}"#), [path, "model.vocab must be a JSON object"])
        assertFails(try hf(#"{"#  + model + #", "added_tokens": [{"id": -4, "content": "<x>"}]}"#),
                    [path, "added token \"<x>\" has id -4"])
        assertFails(try hf(#"{"# + model + #", "added_tokens": [{"id": 99999999999, "content": "<x>"}]}"#), ["has id 99999999999"])
        assertFails(try hf(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}}"#),
                    [path, "makes aa, missing from the vocabulary"])
        assertFails(try hf(#"{"# + model + #", "pre_tokenizer": {"type": "Metaspace", "replacement": ""}}"#),
                    [path, "empty replacement"])
        assertFails(try hf(#"{"# + model + #", "post_processor": {"type": "TemplateProcessing", "#
            + #""single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {"<s>": {"ids": [-1]}}}}"#), ["has id -1"])
    }

    func testTikTokenProblemsAreNamed() throws {
        func tik(_ name: String, _ text: String, vocabSize: Int = 1010, special: Int = 10) throws -> TokenizerOptions {
            TokenizerOptions(type: .tikToken, tokenizerModel: try file(name, text), vocabSize: vocabSize, tiktokenNumSpecialTokens: special)
        }
        assertFails(try tik("empty.tiktoken", ""), ["\(dir)/empty.tiktoken holds no ranks"])
        assertFails(try tik("bad.tiktoken", "YQ== 0\n!!! 1\n"), ["bad.tiktoken: line 2 is not `base64 rank`"])
        assertFails(try tik("bad.json", "[{\"rank\": 0,"), ["\(dir)/bad.json is not valid JSON"])
        assertFails(try tik("list.json", "{}"), ["list.json: expected a JSON list"])
        assertFails(try tik("big.tiktoken", "YQ== 0\n", vocabSize: 1 << 40, special: 1 << 39), ["--vocab-size 1099511627776"])
        assertFails(TokenizerOptions(type: .tikToken, tokenizerModel: dir + "/none.tiktoken"), ["\(dir)/none.tiktoken does not exist"])
    }
}
