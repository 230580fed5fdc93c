import ArgumentParser
import Foundation
import MegatronCore
import MegatronData
import MegatronTensor
import MegatronTraining

/// `megatron generate`: text from a checkpoint, with key/value-cached decoding.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a checkpoint (pretrain-gpt --save or convert --saver megatron).",
        discussion: """
            Without tokenizer flags the tokenizer the checkpoint records is used: the one convert copied from \
            the Hugging Face directory, or the one pretrain-gpt's run named; a run on the embedded corpus uses \
            its byte tokens. All prompts decode together in one batch (left-padded, each with its own \
            positions and sampler), each giving what it would alone. Only ids of the real vocabulary are \
            sampled, never Megatron's padding. A prompt longer than the model's max_position_embeddings keeps \
            its last tokens, and generation stops there; both are reported on stderr.
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
    @Option(help: "text (each prompt, then its continuation) or json (per prompt: ids, text and each token's log-probability).")
    var outputFormat = OutputFormat.text
    @Option(help: "cpu or cuda (default: the GPU when one is usable, else the CPU).") var device: PretrainArguments.DeviceKind?
    @Option(help: "Megatron's --tokenizer-type (default: the tokenizer the checkpoint records).") var tokenizerType: String?
    @Option(help: "vocab.json of GPT2BPETokenizer.") var vocabFile: String?
    @Option(help: "merges.txt of GPT2BPETokenizer.") var mergeFile: String?
    @Option(help: "tokenizer.json, its directory, a tiktoken file, or a SentencePiece .model.") var tokenizerModel: String?
    @Option(help: "Vocabulary size (NullTokenizer, TikTokenizer).") var vocabSize: Int?

    func validate() throws {
        guard !prompt.isEmpty else { throw ValidationError("give at least one --prompt") }
        guard tokensToGenerate > 0 else { throw ValidationError("--tokens-to-generate must be positive, got \(tokensToGenerate)") }
        guard temperature.isFinite && temperature >= 0 else { throw ValidationError("--temperature must be >= 0, got \(temperature)") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0 (0: all tokens), got \(topK)") }
        guard topP >= 0 && topP <= 1 else { throw ValidationError("--top-p must lie in [0, 1], got \(topP)") }
        if tokenizerType == nil, let flag = [("--vocab-file", vocabFile), ("--merge-file", mergeFile), ("--tokenizer-model", tokenizerModel)]
            .first(where: { $0.1 != nil })?.0 ?? (vocabSize != nil ? "--vocab-size" : nil) {
            throw ValidationError("\(flag) needs --tokenizer-type")
        }
    }

    func run() throws {
        let root = URL(fileURLWithPath: load)
        let target = try PretrainArguments.resolveDevice(device)
        let loaded = try GPTCheckpoint.load(from: CheckpointDirectory(root: root), device: target)
        let model = loaded.model
        if model.config.gatedDeltaNet?.layers.contains(true) == true {
            throw ValidationError("\(load) holds a model with Gated DeltaNet layers, which generation does not support yet "
                + "(it keeps no recurrent-state cache)")
        }
        let tokenizer = try checkpointTokenizer(loaded.manifest, root: root, vocab: loaded.vocabSize)
        let ids = try prompt.enumerated().map { index, text in
            try fitted(try tokenizer?.encode(text) ?? ByteTokens.encode(text), prompt: index, vocab: loaded.vocabSize,
                       limit: model.maxSequenceLength)
        }
        let options = SamplingOptions(temperature: greedy ? 0 : temperature, topK: topK, topP: topP, seed: seed)
        let outputs = model.generate(prompts: ids, vocabSize: loaded.vocabSize, maxNewTokens: tokensToGenerate,
                                     stopToken: tokenizer?.eod ?? ByteTokens.endOfDocument, options: options)
        let decode = { (tokens: [Int]) in tokenizer?.decode(tokens) ?? ByteTokens.decode(tokens) }
        switch outputFormat {
        case .text:
            for (index, (text, out)) in zip(prompt, outputs).enumerated() {
                print("----- prompt \(index + 1) -----\n\(text)\n----- continuation \(index + 1) -----\n\(decode(out.tokens))")
            }
        case .json:
            let results: [[String: Any]] = zip(zip(prompt, ids), outputs).map { pair, out in
                ["prompt": pair.0, "prompt_tokens": pair.1, "text": decode(out.tokens), "tokens": out.tokens,
                 "logprobs": out.logProbabilities.map(Double.init)]
            }
            let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// The flags' tokenizer, else the one the checkpoint records, else nil for the embedded corpus's bytes
    /// (refused when the checkpoint's vocabulary is not theirs).
    func checkpointTokenizer(_ manifest: CheckpointManifest, root: URL, vocab: Int) throws -> (any Tokenizer)? {
        do {
            if let tokenizerType {
                guard let kind = TokenizerOptions.Kind(rawValue: tokenizerType) else {
                    throw ValidationError("--tokenizer-type must be one of \(TokenizerOptions.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return try buildTokenizer(TokenizerOptions(type: kind, vocabFile: vocabFile, mergeFile: mergeFile,
                                                           tokenizerModel: tokenizerModel, vocabSize: vocabSize))
            }
            if let options = try CheckpointTokenizer.options(recordedIn: manifest, root: root) {
                note("> tokenizer: \(options.type.rawValue)\(options.tokenizerModel.map { " from \($0)" } ?? ""), as the checkpoint records")
                do {
                    return try buildTokenizer(options)
                } catch let error as TokenizerError {
                    throw ValidationError("the tokenizer \(load) records cannot be built: \(error.description); give the tokenizer flags (--tokenizer-type and its files)")
                }
            }
        } catch let error as TokenizerError {
            throw ValidationError(error.description)
        }
        guard vocab == ByteTokens.vocabularySize else {
            throw ValidationError("\(load) records no tokenizer, and its vocabulary (\(vocab)) is not the embedded corpus's byte tokens (\(ByteTokens.vocabularySize)): give --tokenizer-type and its files")
        }
        return nil
    }

    /// A prompt's ids checked against the real vocabulary and cut to the model's positions, saying so.
    func fitted(_ ids: [Int], prompt index: Int, vocab: Int, limit: Int) throws -> [Int] {
        let label = "--prompt \(index + 1) (\"\(prompt[index].prefix(40))\")"
        guard !ids.isEmpty else { throw ValidationError("\(label) encodes to no tokens") }
        if let bad = ids.first(where: { !(0..<vocab).contains($0) }) {
            throw ValidationError("\(label) encodes to token id \(bad), outside the checkpoint's vocabulary of \(vocab) (ids 0..<\(vocab)): the tokenizer does not match the checkpoint")
        }
        var kept = ids
        if ids.count > limit {
            kept = Array(ids.suffix(limit))
            note("> \(label) has \(ids.count) tokens; keeping its last \(limit) (max_position_embeddings \(limit))")
        }
        // The last generated token is not fed back, so one more than the free positions can be drawn.
        let room = limit - kept.count + 1
        if tokensToGenerate > room {
            note("> --tokens-to-generate \(tokensToGenerate): \(label) leaves room for \(room) (max_position_embeddings \(limit))")
        }
        return kept
    }

    /// A message beside the output, on stderr, so the output itself stays clean.
    func note(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

extension PretrainArguments.DeviceKind: ExpressibleByArgument {}
