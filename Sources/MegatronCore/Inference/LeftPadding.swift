import MegatronTensor

/// How many pad tokens start each row of a batch of prompts of different lengths, so that all rows end
/// in the same column and decode in lockstep (left padding).
///
/// A row's own tokens get positions 0, 1, ... from its first real token on (as if it ran alone), and its
/// real queries never see its pad keys. Pad queries attend only to pad keys: their rows of scores are
/// never all masked, so they stay finite and cannot leak NaN into later layers.
///
/// ```swift
/// let padding = LeftPadding(rowLengths: [3, 5])   // counts [2, 0]
/// padding.positions(from: 0, count: 5)            // [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
/// ```
public struct LeftPadding: Equatable {
    /// Pad tokens at the start of each row.
    public let counts: [Int]

    public init(counts: [Int]) {
        precondition(counts.allSatisfy { $0 >= 0 }, "left padding counts must not be negative, got \(counts)")
        self.counts = counts
    }

    /// Padding that aligns rows of these lengths on the longest.
    public init(rowLengths: [Int]) {
        let width = rowLengths.max() ?? 0
        self.init(counts: rowLengths.map { width - $0 })
    }

    /// Positions `[batch, count]` of the columns `start..<start + count` in each row (0 for pad columns).
    public func positions(from start: Int, count: Int) -> [[Int]] {
        counts.map { pad in (start..<start + count).map { Swift.max(0, $0 - pad) } }
    }

    /// The largest position any row reaches in the columns `start..<start + count`.
    public func lastPosition(from start: Int, count: Int) -> Int {
        start + count - 1 - (counts.min() ?? 0)
    }

    /// A bool mask `[batch, 1, 1, queries, keys]` (true: hidden) over attention scores whose queries are the
    /// columns `keys - queries ..< keys`: a row's real queries may not see its pad keys.
    public func keyMask(queries: Int, keys: Int) -> Tensor {
        let firstQuery = keys - queries
        var hidden: [Int] = []
        hidden.reserveCapacity(counts.count * queries * keys)
        for pad in counts {
            for query in firstQuery..<keys {
                for key in 0..<keys { hidden.append(key < pad && query >= pad ? 1 : 0) }
            }
        }
        return Tensor(shape: [counts.count, 1, 1, queries, keys], ints: hidden, dtype: .bool)
    }
}
