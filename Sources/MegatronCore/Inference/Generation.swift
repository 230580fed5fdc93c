import Foundation
import MegatronAutograd
import MegatronTensor

/// Options for sampling text from a language model (Megatron's `--greedy`, `--temperature`, `--top-k`,
/// `--top-p`, `--seed`).
public struct SamplingOptions {
    /// 0 picks the most likely token (greedy).
    public var temperature: Float
    /// Sample among the `topK` most likely tokens (0: no limit).
    public var topK: Int
    /// Sample among the most likely tokens whose probabilities add up to `topP` (0 or 1: no limit).
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0.8, topK: Int = 20, topP: Float = 0, seed: UInt64 = 1234) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }
}

/// Tokens a model generated after a prompt, each with its log-probability under the model.
public struct GeneratedSequence: Equatable {
    public var tokens: [Int]
    public var logProbabilities: [Float]
}

/// One prompt's state while a batch decodes.
struct DecodingRow {
    let generator: PhiloxGenerator
    var output = GeneratedSequence(tokens: [], logProbabilities: [])
    var finished = false

    /// Draws the next token from this row's `logits` with its own generator, records it with its
    /// log-probability, and returns it.
    mutating func appendToken(sampledFrom logits: [Float], options: SamplingOptions) -> Int {
        let next = GPTModel.sample(logits, options: options, uniform: Tensor.uniform([1], generator: generator).item())
        output.tokens.append(next)
        output.logProbabilities.append(GPTModel.logProbability(of: next, in: logits))
        return next
    }
}

extension GPTModel {
    /// Continues `prompt` by up to `maxNewTokens` tokens with key/value-cached decoding, stopping early at
    /// `stopToken` or at the model's maximum sequence length. Runs in evaluation mode without gradients.
    ///
    /// Only ids below `vocabSize`, the tokenizer's unpadded vocabulary, are ever drawn: the rows Megatron pads
    /// the vocabulary with (`self.vocabSize`) are no tokens, and their logits, zero for an imported model,
    /// would otherwise beat the real ones whenever those are all negative.
    public func generate(prompt: [Int], vocabSize: Int, maxNewTokens: Int, stopToken: Int? = nil,
                         options: SamplingOptions = SamplingOptions()) -> GeneratedSequence {
        generate(prompts: [prompt], vocabSize: vocabSize, maxNewTokens: maxNewTokens, stopToken: stopToken, options: options)[0]
    }

    /// Continues each prompt as `generate(prompt:)` would alone, decoding all of them in one batch.
    ///
    /// Prompts of different lengths are left-padded to the longest; each row keeps its own positions, never
    /// attends to its padding, draws from its own sampler seeded with `options.seed`, and stops on its own
    /// (at `stopToken`, after `maxNewTokens`, or at the maximum sequence length) while the others go on.
    /// Prompt ids must lie below `vocabSize` (the unpadded vocabulary), and only such ids are drawn.
    ///
    /// ```swift
    /// let outputs = model.generate(prompts: [[1, 2, 3], [7]], vocabSize: 50257, maxNewTokens: 16, stopToken: eod,
    ///                              options: SamplingOptions(temperature: 0))
    /// outputs[1].tokens   // what model.generate(prompt: [7], ...) gives
    /// ```
    public func generate(prompts: [[Int]], vocabSize real: Int, maxNewTokens: Int, stopToken: Int? = nil,
                         options: SamplingOptions = SamplingOptions()) -> [GeneratedSequence] {
        precondition(!prompts.isEmpty && prompts.allSatisfy { !$0.isEmpty },
                     "generation needs at least one prompt, each of at least one token")
        precondition(real > 0 && real <= vocabSize, "the unpadded vocabulary (\(real)) must lie in 1...\(vocabSize)")
        precondition(prompts.allSatisfy { $0.allSatisfy { (0..<real).contains($0) } },
                     "prompt token ids must lie in the vocabulary 0..<\(real)")
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        let trimmed = prompts.map { Array($0.suffix(maxSequenceLength)) }
        let padding = LeftPadding(rowLengths: trimmed.map(\.count))
        let cache = KVCache(layers: config.numLayers, padding: padding.counts.allSatisfy { $0 == 0 } ? nil : padding)
        var rows = trimmed.map { _ in DecodingRow(generator: PhiloxGenerator(seed: options.seed)) }
        var batch = Array(rows.indices)       // the rows still decoding, in cache order
        var step = zip(padding.counts, trimmed).map { [Int](repeating: 0, count: $0) + $1 }
        while maxNewTokens > 0 && !batch.isEmpty {
            let input = Tensor(shape: [batch.count, step[0].count], ints: step.flatMap { $0 })
                .to(wordEmbeddings!.weight.device)
            let logits = withoutGrad { self(input, cache: cache) }
            let last = logits.selected(1, step[0].count - 1).floats()     // [batch, vocab]
            let vocab = last.count / batch.count
            for (slot, r) in batch.enumerated() {
                let next = rows[r].appendToken(sampledFrom: Array(last[slot * vocab..<slot * vocab + real]), options: options)
                let ownLength = cache.length - padding.counts[r]
                rows[r].finished = next == stopToken || rows[r].output.tokens.count >= maxNewTokens
                    || ownLength + 1 > maxSequenceLength
            }
            let kept = batch.indices.filter { !rows[batch[$0]].finished }
            if kept.count < batch.count && !kept.isEmpty { cache.retainRows(kept) }
            batch = kept.map { batch[$0] }
            step = batch.map { [rows[$0].output.tokens.last!] }
        }
        return rows.map(\.output)
    }

    /// log softmax(logits)[token].
    static func logProbability(of token: Int, in logits: [Float]) -> Float {
        let top = logits.max()!
        let total = logits.reduce(0) { $0 + Foundation.exp($1 - top) }
        return logits[token] - top - Foundation.log(total)
    }

    /// Picks a token from `logits` given one uniform draw in [0, 1).
    static func sample(_ logits: [Float], options: SamplingOptions, uniform: Float) -> Int {
        let ranked = logits.indices.sorted { logits[$0] > logits[$1] }
        if options.temperature == 0 { return ranked[0] }
        var candidates = options.topK > 0 ? Array(ranked.prefix(options.topK)) : ranked
        let top = logits[candidates[0]]
        var weights = candidates.map { Foundation.exp((logits[$0] - top) / options.temperature) }
        if options.topP > 0 && options.topP < 1 {
            let total = weights.reduce(0, +)
            var kept = 0, mass: Float = 0
            while kept < weights.count && mass < options.topP * total {
                mass += weights[kept]
                kept += 1
            }
            candidates = Array(candidates.prefix(kept))
            weights = Array(weights.prefix(kept))
        }
        var threshold = uniform * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            threshold -= weight
            if threshold < 0 { return candidate }
        }
        return candidates.last!
    }
}
