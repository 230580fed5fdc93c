/// A low-level dataset of token sequences: an `IndexedDataset` on disk, or Megatron's mock data.
public protocol TokenSource: Sendable {
    var sequenceCount: Int { get }
    /// All sequence lengths (what the index build reads).
    var sequenceLengths: [Int32] { get }
    /// Tokens `offset ..< offset+length` of sequence `i` (to its end when `length` is nil).
    func sequence(_ i: Int, offset: Int, length: Int?) -> [Int32]
}

extension IndexedDataset: TokenSource {}
