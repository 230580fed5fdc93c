/// Megatron's `MockGPTLowLevelDataset` (`--mock-data`): 100,000 synthetic documents whose lengths come
/// from `numpy.random.default_rng(0).integers(1, 4096)`; document `i` of length `L` is
/// `[1, 2, …, L−1] mod vocab` followed by EOD.
public struct MockGPTLowLevelDataset: TokenSource {
    public static let size = 100_000
    public static let maxSequenceLength: Int32 = 4096
    public let vocabSize: Int
    public let eod: Int
    public let sequenceLengths: [Int32]

    public init(vocabSize: Int, eod: Int) {
        self.vocabSize = vocabSize
        self.eod = eod
        var rng = NumpyPCG64(seed: 0)
        sequenceLengths = (0..<Self.size).map { _ in rng.integer(low: 1, high: Self.maxSequenceLength) }
    }

    public var sequenceCount: Int { Self.size }

    public func sequence(_ i: Int, offset: Int, length: Int?) -> [Int32] {
        let total = Int(sequenceLengths[i])
        let count = length ?? (total - offset)
        return (offset..<(offset + count)).map { p in
            p == total - 1 ? Int32(truncatingIfNeeded: eod) : Int32((p + 1) % vocabSize)
        }
    }
}
