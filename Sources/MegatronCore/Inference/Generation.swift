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

extension GPTModel {
    /// Continues `prompt` by up to `maxNewTokens` tokens with key/value-cached decoding, stopping early at
    /// `stopToken` or at the model's maximum sequence length. Runs in evaluation mode without gradients.
    public func generate(prompt: [Int], maxNewTokens: Int, stopToken: Int? = nil,
                         options: SamplingOptions = SamplingOptions()) -> GeneratedSequence {
        precondition(!prompt.isEmpty, "generation needs a prompt of at least one token")
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        let rng = PhiloxGenerator(seed: options.seed)
        let cache = KVCache(layers: config.numLayers)
        var output = GeneratedSequence(tokens: [], logProbabilities: [])
        var step = Array(prompt.suffix(maxSequenceLength))
        while output.tokens.count < maxNewTokens && cache.length + step.count <= maxSequenceLength {
            let input = Tensor(shape: [1, step.count], ints: step).to(wordEmbeddings.weight.device)
            let logits = withoutGrad { self(input, cache: cache) }
            let last = logits.selected(1, step.count - 1).floats()
            let next = Self.sample(last, options: options, uniform: Tensor.uniform([1], generator: rng).item())
            output.tokens.append(next)
            output.logProbabilities.append(Self.logProbability(of: next, in: last))
            if next == stopToken { break }
            step = [next]
        }
        return output
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
