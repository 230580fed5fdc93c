import ArgumentParser
import Foundation
import MegatronData

/// `megatron preprocess-data`: JSONL to Megatron `.bin/.idx`, with Megatron's `tools/preprocess_data.py` flags.
///
/// ```
/// megatron preprocess-data --input corpus.jsonl --output-prefix my-gpt2 \
///     --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt --append-eod
/// ```
struct PreprocessData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess-data",
        abstract: "Tokenize JSONL documents into Megatron's indexed dataset format (.bin/.idx).")

    @Option(name: .customLong("input"), help: "JSONL input (.gz accepted); with --partitions > 1 a glob pattern.")
    var input: String

    @Option(name: .customLong("output-prefix"), help: "Outputs are {prefix}_{key}_document.bin/.idx.")
    var outputPrefix: String

    @Option(name: .customLong("json-keys"), parsing: .upToNextOption, help: "JSON keys to tokenize.")
    var jsonKeys: [String] = ["text"]

    @Flag(name: .customLong("append-eod"), help: "Append the end-of-document token to each document.")
    var appendEOD = false

    @Option(name: .customLong("workers"), help: "Tokenizing threads; the default is every core.")
    var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .customLong("partitions"), help: "Megatron's input partitions; reproduces its document order.")
    var partitions = 1

    @Flag(name: .customLong("keep-sequential-samples"), help: "Partitions are contiguous blocks (input order kept).")
    var keepSequentialSamples = false

    @Option(name: .customLong("log-interval"), help: "Report progress every this many documents.")
    var logInterval = 1000

    @Flag(name: .customLong("skip-malformed"), help: "Skip and count malformed lines instead of stopping (not in Megatron).")
    var skipMalformed = false

    @Flag(name: .customLong("split-sentences"), help: "Not supported (Megatron uses NLTK punkt).")
    var splitSentences = false

    @Option(name: .customLong("tokenizer-type"), help: "GPT2BPETokenizer, HuggingFaceTokenizer, TikTokenizer, GPTSentencePieceTokenizer, Llama2Tokenizer, SentencePieceTokenizer or NullTokenizer.")
    var tokenizerType: String = TokenizerOptions.Kind.gpt2BPE.rawValue

    @Option(name: .customLong("vocab-file")) var vocabFile: String?
    @Option(name: .customLong("merge-file")) var mergeFile: String?
    @Option(name: .customLong("tokenizer-model")) var tokenizerModel: String?
    @Option(name: .customLong("vocab-size")) var vocabSize: Int?
    @Option(name: .customLong("tiktoken-pattern")) var tiktokenPattern: String?
    @Option(name: .customLong("tiktoken-num-special-tokens")) var tiktokenNumSpecialTokens = 1000

    func validate() throws {
        if splitSentences { throw ValidationError("--split-sentences is not supported (it needs NLTK's punkt models)") }
        guard TokenizerOptions.Kind(rawValue: tokenizerType) != nil else {
            let known = TokenizerOptions.Kind.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--tokenizer-type \(tokenizerType) is not supported; choose one of \(known)")
        }
    }

    func run() throws {
        let tokenizerOptions = TokenizerOptions(
            type: TokenizerOptions.Kind(rawValue: tokenizerType)!, vocabFile: vocabFile, mergeFile: mergeFile,
            tokenizerModel: tokenizerModel, vocabSize: vocabSize, tiktokenPattern: tiktokenPattern,
            tiktokenNumSpecialTokens: tiktokenNumSpecialTokens)
        let tokenizer = try buildTokenizer(tokenizerOptions)
        var options = PreprocessOptions(inputs: try inputFiles(), outputPrefix: outputPrefix)
        options.jsonKeys = jsonKeys
        options.appendEOD = appendEOD
        options.workers = workers
        options.partitions = partitions
        options.keepSequentialSamples = keepSequentialSamples
        options.logInterval = logInterval
        options.skipMalformed = skipMalformed
        let report = try Preprocessor(options: options, tokenizer: tokenizer).run { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        for skipped in report.skippedLines { FileHandle.standardError.write(Data(("skipped: " + skipped + "\n").utf8)) }
        print(String(format: "Done: %d documents, %.2f MB in %.2f s (%.1f docs/s, %.2f MB/s) with %d workers.",
                     report.documents, Double(report.bytes) / 1024 / 1024, report.seconds, report.documentsPerSecond,
                     report.megabytesPerSecond, workers))
        if !report.skippedLines.isEmpty { print("Skipped \(report.skippedLines.count) malformed lines.") }
        for prefix in report.outputPrefixes { print("Wrote \(prefix).bin and \(prefix).idx") }
    }

    /// One file, or (as Megatron with --partitions > 1) the sorted matches of a glob pattern.
    private func inputFiles() throws -> [String] {
        guard partitions > 1 else { return [input] }
        var matches = glob_t()
        defer { globfree(&matches) }
        guard glob(input, 0, nil, &matches) == 0 else { throw ValidationError("--input \(input) matches no file") }
        return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
}
