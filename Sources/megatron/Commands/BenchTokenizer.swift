import ArgumentParser
import Foundation
import MegatronData

/// `megatron bench tokenizer`: single-thread encoding speed on the documents of a JSONL file.
///
/// ```
/// megatron bench tokenizer --input docs.jsonl --tiktoken-file cl100k_base.tiktoken
/// megatron bench tokenizer --input docs.jsonl --tokenizer-type HuggingFaceTokenizer --tokenizer-model tok/
/// ```
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Time tokenizer encoding on one core: tokens/s and MB/s over a JSONL file's documents.")

    @Option(help: "JSONL file, one {\"text\": ...} document a line.")
    var input: String
    @Option(help: "A .tiktoken rank file encoded with cl100k's own pattern and no id shift (tiktoken's cl100k_base).")
    var tiktokenFile: String?
    @Option(help: "Megatron tokenizer type, when --tiktoken-file is not given.")
    var tokenizerType: String = TokenizerOptions.Kind.huggingFace.rawValue
    @Option var tokenizerModel: String?
    @Option var vocabFile: String?
    @Option var mergeFile: String?
    @Option var vocabSize: Int?
    @Option(help: "Timed passes over the documents; the best is reported.")
    var repeats: Int = 3

    func run() throws {
        let documents = try BenchTokenizer.documents(input)
        let bytes = documents.reduce(0) { $0 + $1.utf8.count }
        let (name, encode) = try encoder()
        var best = Double.infinity
        var tokens = 0
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            tokens = 0
            for document in documents { tokens += try encode(document).count }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print(
            String(
                format: "%@: %d documents, %.2f MB, %d tokens in %.3f s: %.0f tokens/s, %.2f MB/s (one thread)",
                name, documents.count, Double(bytes) / 1e6, tokens, best, Double(tokens) / best,
                Double(bytes) / 1e6 / best))
    }

    private func encoder() throws -> (String, (String) throws -> [Int]) {
        if let tiktokenFile {
            let encoding = try TikTokenEncoding(
                rankFile: tiktokenFile, pattern: .cl100k, specialTokens: [("<|endoftext|>", 100257)])
            return ("tiktoken cl100k", encoding.encode)
        }
        guard let kind = TokenizerOptions.Kind(rawValue: tokenizerType) else {
            throw ValidationError("unknown --tokenizer-type \(tokenizerType)")
        }
        let tokenizer = try buildTokenizer(
            TokenizerOptions(
                type: kind, vocabFile: vocabFile, mergeFile: mergeFile, tokenizerModel: tokenizerModel,
                vocabSize: vocabSize))
        return (kind.rawValue, tokenizer.encode)
    }

    /// The `text` field of each line.
    static func documents(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read --input \(path)")
        }
        return try data.split(separator: UInt8(ascii: "\n")).enumerated().map { number, line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                let text = object["text"] as? String
            else { throw ValidationError("\(path): line \(number + 1) has no \"text\" string") }
            return text
        }
    }
}
