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

    /// A bool mask `[batch, 1, 1, queries, keys]` (true: hidden) on `device` over attention scores whose
    /// queries are the columns `keys - queries ..< keys`: a row's real queries may not see its pad keys.
    /// Only `batch x queries` thresholds are made on the host; the mask itself is one comparison there.
    public func keyMask(queries: Int, keys: Int, device: Device = .cpu) -> Tensor {
        let firstQuery = keys - queries
        // Query i of a row with `pad` pad columns hides the keys below `pad` once it is a real token.
        let thresholds = counts.flatMap { pad in (firstQuery..<keys).map { $0 >= pad ? pad : 0 } }
        let limit = Tensor(shape: [counts.count, 1, 1, queries, 1], ints: thresholds).to(device)
        return Ops.compare(Tensor.arange(0, keys, device: device).reshaped([1, 1, 1, 1, keys]), limit, .less)
    }
}
