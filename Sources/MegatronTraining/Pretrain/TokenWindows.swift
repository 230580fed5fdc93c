import MegatronCore
import MegatronTensor

/// Fixed-length training samples cut from one token stream, GPTDataset-style: each sample holds
/// `sequenceLength + 1` tokens and overlaps the next by one (its last token is the next one's first).
/// Sample order is a seeded permutation, so runs and resumes see the same batches.
public struct TokenWindows: TrainingData {
    public let tokens: [Int]
    public let sequenceLength: Int
    let order: [Int]

    public init(tokens: [Int], sequenceLength: Int, seed: UInt64) {
        precondition(tokens.count > sequenceLength, "\(tokens.count) tokens are too few for one sample of \(sequenceLength)")
        self.tokens = tokens
        self.sequenceLength = sequenceLength
        let count = (tokens.count - 1) / sequenceLength
        order = Self.permutation(count, seed: seed)
    }

    public var count: Int { order.count }

    /// Tokens `[batch, seq]` and labels (the tokens shifted by one) for global samples `first..<first+batch`,
    /// wrapping around the epoch.
    func batch(startingAt first: Int, size: Int) -> TrainingBatch {
        var input: [Int] = [], labels: [Int] = []
        for k in 0..<size {
            let start = order[(first + k) % count] * sequenceLength
            let window = tokens[start...(start + sequenceLength)]
            input += window.dropLast()
            labels += window.dropFirst()
        }
        return TrainingBatch(tokens: Tensor(shape: [size, sequenceLength], ints: input),
                             labels: Tensor(shape: [size, sequenceLength], ints: labels), lossMask: nil)
    }

    /// A Fisher-Yates shuffle of `0..<n` driven by Philox.
    static func permutation(_ n: Int, seed: UInt64) -> [Int] {
        var values = Array(0..<n)
        guard n > 1 else { return values }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let r = Philox.block(counter: (UInt32(truncatingIfNeeded: i), 0, 0, 0),
                                 key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
            values.swapAt(i, Int(r.0 % UInt32(i + 1)))
        }
        return values
    }
}
