import ArgumentParser
import Foundation
import MegatronCore
import MegatronData

/// `megatron generate`: text from a checkpoint, with key/value-cached decoding.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a checkpoint (pretrain-gpt --save or convert --saver megatron).",
        discussion: """
            Tokenizer flags are those of training; without them the checkpoint's byte tokens (the embedded \
            corpus) are used. All prompts decode together in one batch (left-padded, each with its own \
            positions and sampler), each giving what it would alone.
            """)

    enum OutputFormat: String, ExpressibleByArgument { case text, json }

    @Option(help: "Checkpoint directory.") var load: String
    @Option(help: "A prompt; repeat for several.") var prompt: [String] = []
    // Numbers are parsed `.unconditional`ly so that a negative one reaches `validate` and is named there.
    @Option(parsing: .unconditional, help: "Tokens to generate per prompt.") var tokensToGenerate = 64
    @Flag(help: "Always take the most likely token.") var greedy = false
    @Option(parsing: .unconditional, help: "Sampling temperature.") var temperature: Float = 1.0
    @Option(parsing: .unconditional, help: "Sample among the k most likely tokens (0: all).") var topK = 0
    @Option(parsing: .unconditional, help: "Sample among the most likely tokens holding this probability mass (0: all).")
    var topP: Float = 0
    @Option(help: "Random seed of the sampling.") var seed: UInt64 = 1234
    @Option(help: "text or json (per prompt: ids, text and each token's log-probability).") var outputFormat = OutputFormat.text
    @Option(help: "Megatron's --tokenizer-type.") var tokenizerType: String?
    @Option(help: "vocab.json of GPT2BPETokenizer.") var vocabFile: String?
    @Option(help: "merges.txt of GPT2BPETokenizer.") var mergeFile: String?
    @Option(help: "tokenizer.json, its directory, or a tiktoken file.") var tokenizerModel: String?
    @Option(help: "Vocabulary size (NullTokenizer, TikTokenizer).") var vocabSize: Int?

    func validate() throws {
        guard !prompt.isEmpty else { throw ValidationError("give at least one --prompt") }
        guard tokensToGenerate > 0 else { throw ValidationError("--tokens-to-generate must be positive, got \(tokensToGenerate)") }
        guard temperature.isFinite && temperature >= 0 else { throw ValidationError("--temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0 (0: all tokens), got \(topK)") }
        guard topP >= 0 && topP <= 1 else { throw ValidationError("--top-p must lie in [0, 1], got \(topP)") }
    }

    func run() throws {
        let (model, _) = try GPTCheckpoint.load(from: CheckpointDirectory(root: URL(fileURLWithPath: load)))
        let tokenizer = try tokenizerType.map { name -> any Tokenizer in
            guard let kind = TokenizerOptions.Kind(rawValue: name) else {
                throw ValidationError("--tokenizer-type must be one of \(TokenizerOptions.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return try buildTokenizer(TokenizerOptions(type: kind, vocabFile: vocabFile, mergeFile: mergeFile,
                                                       tokenizerModel: tokenizerModel, vocabSize: vocabSize))
        }
        let options = SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP, seed: seed)
        let stop = tokenizer?.eod ?? ByteTokens.endOfDocument
        let ids = prompt.map { tokenizer?.encode($0) ?? ByteTokens.encode($0) }
        if let empty = ids.firstIndex(where: \.isEmpty) {
            throw ValidationError("--prompt \(empty + 1) (\"\(prompt[empty])\") encodes to no tokens")
        }
        for (index, tokens) in ids.enumerated() {
            if let id = tokens.first(where: { !(0..<model.vocabSize).contains($0) }) {
                throw ValidationError("--prompt \(index + 1) (\"\(prompt[index])\") has token id \(id), outside the "
                    + "checkpoint's vocabulary of \(model.vocabSize) (padded): give the tokenizer flags the model was trained with")
            }
        }
        let outputs = model.generate(prompts: ids, maxNewTokens: tokensToGenerate, stopToken: stop, options: options)
        var results: [[String: Any]] = []
        for (text, out) in zip(prompt, outputs) {
            let generated = tokenizer?.decode(out.tokens) ?? ByteTokens.decode(out.tokens)
            switch outputFormat {
            case .text: print(text + generated)
            case .json:
                results.append(["prompt": text, "text": generated, "tokens": out.tokens,
                                "logprobs": out.logProbabilities.map(Double.init)])
            }
        }
        if outputFormat == .json {
            let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
