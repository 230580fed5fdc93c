/// A micro-batch as plain arrays, row-major `[microBatchSize, sequenceLength]`.
public struct GPTBatch: Equatable, Sendable {
    public var microBatchSize: Int
    public var sequenceLength: Int
    /// The global sample ids in the batch (positions in the dataset, before its shuffle).
    public var sampleIDs: [Int]
    public var tokens: [Int32]
    public var labels: [Int32]
    public var lossMask: [Float]
    public var positionIDs: [Int32]
    /// Per row, the positions after which attention restarts (`--reset-attention-mask`); empty without it.
    public var attentionResets: [[Int]]

    /// Shape of `tokens`, `labels`, `lossMask` and `positionIDs`.
    public var shape: [Int] { [microBatchSize, sequenceLength] }

    /// Stacks samples of equal length into one batch.
    public init(sampleIDs: [Int], samples: [GPTSample]) {
        precondition(!samples.isEmpty && samples.allSatisfy { $0.tokens.count == samples[0].tokens.count }, "samples of one length")
        microBatchSize = samples.count
        sequenceLength = samples[0].tokens.count
        self.sampleIDs = sampleIDs
        tokens = samples.flatMap(\.tokens)
        labels = samples.flatMap(\.labels)
        lossMask = samples.flatMap(\.lossMask)
        positionIDs = samples.flatMap(\.positionIDs)
        attentionResets = samples.map(\.attentionResets)
    }
}
