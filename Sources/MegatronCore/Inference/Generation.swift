import Foundation
import MegatronAutograd
import MegatronTensor

/// Options for sampling text from a language model.
public struct SamplingOptions {
    /// 0 picks the most likely token (greedy).
    public var temperature: Float
    /// Sample among the `topK` most likely tokens (0: all).
    public var topK: Int
    public var seed: UInt64

    public init(temperature: Float = 0.8, topK: Int = 20, seed: UInt64 = 1234) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }
}

extension GPTModel {
    /// Continues `prompt` by `maxNewTokens` tokens, stopping early at `stopToken`.
    ///
    /// Each step re-runs the model over the visible window (no key/value cache yet), in evaluation mode.
    public func generate(prompt: [Int], maxNewTokens: Int, stopToken: Int? = nil,
                         options: SamplingOptions = SamplingOptions()) -> [Int] {
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        let rng = PhiloxGenerator(seed: options.seed)
        var tokens = prompt
        for _ in 0..<maxNewTokens {
            let window = Array(tokens.suffix(maxSequenceLength))
            let logits = withoutGrad { self(Tensor(shape: [1, window.count], ints: window)) }
            let last = logits.selected(1, window.count - 1).floats()
            let next = Self.sample(last, options: options, uniform: Tensor.uniform([1], generator: rng).item())
            tokens.append(next)
            if next == stopToken { break }
        }
        return Array(tokens.dropFirst(prompt.count))
    }

    /// Picks a token from `logits` given one uniform draw in [0, 1).
    static func sample(_ logits: [Float], options: SamplingOptions, uniform: Float) -> Int {
        let ranked = logits.indices.sorted { logits[$0] > logits[$1] }
        if options.temperature == 0 { return ranked[0] }
        let candidates = options.topK > 0 ? Array(ranked.prefix(options.topK)) : ranked
        let top = logits[candidates[0]]
        let weights = candidates.map { Foundation.exp((logits[$0] - top) / options.temperature) }
        var threshold = uniform * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            threshold -= weight
            if threshold < 0 { return candidate }
        }
        return candidates.last!
    }
}
