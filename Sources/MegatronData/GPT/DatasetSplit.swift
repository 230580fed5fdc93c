/// Megatron's three dataset splits, in its order.
public enum DatasetSplit: Int, CaseIterable, Sendable {
    case train = 0, valid = 1, test = 2

    /// The name used in cache file names and descriptions.
    public var name: String {
        switch self {
        case .train: return "train"
        case .valid: return "valid"
        case .test: return "test"
        }
    }
}

/// `--split 969,30,1` as Megatron reads it: weights normalised to fractions, then book-ends per split.
public struct SplitMatrix: Equatable, Sendable {
    /// `(low, high)` fractions per split, nil for an empty split.
    public var bookends: [(low: Double, high: Double)?]

    public static func == (a: SplitMatrix, b: SplitMatrix) -> Bool { a.json == b.json }

    /// Parses `"969,30,1"` (any separators; numbers as `[.0-9]+`), pads to three, normalises.
    public init(parsing split: String) throws {
        var weights: [Double] = []
        var current = ""
        for ch in split + " " {
            if ch.isASCII && (ch.isNumber || ch == ".") {
                current.append(ch)
            } else if !current.isEmpty {
                guard let w = Double(current) else { throw DatasetError("--split \(split): cannot read \(current) as a number") }
                weights.append(w)
                current = ""
            }
        }
        guard weights.count <= 3 else { throw DatasetError("--split \(split): at most 3 weights (train, valid, test), got \(weights.count)") }
        weights += Array(repeating: 0, count: 3 - weights.count)
        let sum = weights.reduce(0, +)
        guard sum > 0, sum.isFinite else { throw DatasetError("--split \(split): weights must be finite and not all zero") }
        self.init(fractions: weights.map { $0 / sum })
    }

    /// Book-ends from normalised fractions (Megatron's `convert_split_vector_to_split_matrix`).
    public init(fractions: [Double]) {
        var low = 0.0
        bookends = fractions.map { f in
            let high = low + f
            defer { low = high }
            return high <= low ? nil : (low, high)
        }
    }

    init(bookends: [(low: Double, high: Double)?]) { self.bookends = bookends }

    /// The sequence range of split `s` among `count` sequences (Python `round`: half to even).
    public func range(_ s: DatasetSplit, count: Int) -> Range<Int>? {
        guard let b = bookends[s.rawValue] else { return nil }
        let lo = Int((b.low * Double(count)).rounded(.toNearestOrEven))
        let hi = Int((b.high * Double(count)).rounded(.toNearestOrEven))
        return lo..<max(lo, hi)
    }

    /// As Megatron's description prints it; the first book-end starts at Python's integer 0 (`[0] + cumsum`).
    var json: PythonJSON {
        .array(bookends.enumerated().map { i, b in
            guard let b else { return .null }
            let low: PythonJSON = i == 0 ? .int(0) : .float(b.low)
            return .array([low, .float(b.high)])
        })
    }
}
