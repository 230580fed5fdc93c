/// Megatron's `MegatronPretrainingSampler` (dataloader type "single"): global sample ids run in order from
/// `consumedSamples`; each block of `microBatchSize × dataParallelSize` ids is split so that data-parallel
/// rank `r` gets ids `[r·mbs, (r+1)·mbs)` of the block. Resuming a run is starting at its consumed count.
///
/// ```swift
/// let sampler = try PretrainingSampler(totalSamples: 1000, consumedSamples: 64, microBatchSize: 4,
///                                      dataParallelRank: 1, dataParallelSize: 2)
/// for ids in sampler { … }   // [68, 69, 70, 71], [76, 77, 78, 79], …
/// ```
public struct PretrainingSampler: Sequence, Sendable {
    public let totalSamples: Int
    public let consumedSamples: Int
    public let microBatchSize: Int
    public let dataParallelRank: Int
    public let dataParallelSize: Int
    public let dropLast: Bool

    public init(totalSamples: Int, consumedSamples: Int, microBatchSize: Int, dataParallelRank: Int = 0,
                dataParallelSize: Int = 1, dropLast: Bool = true) throws {
        guard totalSamples > 0 else { throw DatasetError("no sample to consume: the dataset has \(totalSamples) samples") }
        guard consumedSamples < totalSamples else {
            throw DatasetError("no samples left to consume: \(consumedSamples) consumed of \(totalSamples)")
        }
        guard microBatchSize > 0, dataParallelSize > 0 else { throw DatasetError("micro-batch size and data-parallel size must be positive") }
        guard dataParallelRank >= 0 && dataParallelRank < dataParallelSize else {
            throw DatasetError("data-parallel rank \(dataParallelRank) out of range 0..<\(dataParallelSize)")
        }
        self.totalSamples = totalSamples
        self.consumedSamples = consumedSamples
        self.microBatchSize = microBatchSize
        self.dataParallelRank = dataParallelRank
        self.dataParallelSize = dataParallelSize
        self.dropLast = dropLast
    }

    public struct Iterator: IteratorProtocol {
        let sampler: PretrainingSampler
        var position: Int

        public mutating func next() -> [Int]? {
            let block = sampler.microBatchSize * sampler.dataParallelSize
            let end = Swift.min(position + block, sampler.totalSamples)
            // A short final block is dropped unless dropLast is off; a rank with nothing in it stops.
            guard end > position, end - position == block || !sampler.dropLast else { return nil }
            let start = position + sampler.dataParallelRank * sampler.microBatchSize
            position = end
            guard start < end else { return nil }
            return Array(start..<Swift.min(start + sampler.microBatchSize, end))
        }
    }

    public func makeIterator() -> Iterator { Iterator(sampler: self, position: consumedSamples) }
}
