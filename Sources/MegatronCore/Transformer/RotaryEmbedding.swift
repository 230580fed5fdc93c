import Foundation
import MegatronAutograd
import MegatronTensor

/// Rotary position embedding as Megatron Core applies it (non-interleaved halves, `rotate_half`), on the
/// first `rotaryPercent` of each head's channels, through the fused `Functional.rotaryEmbedding`
/// primitive (one kernel forward and one backward per tensor on the GPU, a loop on the CPU). The
/// frequencies, rescaled by `scaling` when given (Llama 3.x), are turned into cos / sin tables on the host,
/// so the GPU kernel needs to know nothing of the scaling.
public struct RotaryEmbedding {
    public let rotaryDim: Int
    public let base: Float
    public let scaling: RopeScaling?
    /// YaRN (`--position-embedding-type yarn`): its frequencies, every channel rotated, cos / sin scaled.
    public let yarn: YarnScaling?
    /// One inverse frequency per pair of rotated channels, in fp32 as PyTorch makes them.
    let inverseFrequencies: [Float]
    /// What the cos / sin tables are multiplied by (YaRN's concentration factor; 1 otherwise).
    let tableScale: Float
    /// Tables of the last position range asked for, per dtype and device: every training step asks for
    /// the same `0..<seq`, so they are computed and uploaded once.
    private let cache = TableCache()

    public init(kvChannels: Int, rotaryPercent: Float, base: Float, scaling: RopeScaling? = nil, yarn: YarnScaling? = nil) {
        rotaryDim = yarn == nil ? Int(Float(kvChannels) * rotaryPercent) : kvChannels
        self.base = base
        self.scaling = scaling
        self.yarn = yarn
        let dim = rotaryDim
        let plain = (0..<dim / 2).map { i in Float(1 / Foundation.pow(Double(base), Double(2 * i) / Double(dim))) }
        inverseFrequencies = yarn?.inverseFrequencies(dim: dim, base: base) ?? scaling?.apply(to: plain) ?? plain
        tableScale = yarn?.concentrationFactor ?? 1
    }

    /// cos and sin tables `[positions.count, rotaryDim]` for the given positions.
    func tables(positions: [Int]) -> (cos: Tensor, sin: Tensor) {
        let half = rotaryDim / 2
        var cosValues = [Float](repeating: 0, count: positions.count * rotaryDim)
        var sinValues = cosValues
        for (row, pos) in positions.enumerated() {
            for i in 0..<half {
                let angle = Double(pos) * Double(inverseFrequencies[i])
                for j in [i, i + half] {
                    cosValues[row * rotaryDim + j] = Float(Foundation.cos(angle)) * tableScale
                    sinValues[row * rotaryDim + j] = Float(Foundation.sin(angle)) * tableScale
                }
            }
        }
        return (Tensor(shape: [positions.count, rotaryDim], values: cosValues),
                Tensor(shape: [positions.count, rotaryDim], values: sinValues))
    }

    /// Rotates `x [batch, ..., seq, headDim]` (rank 3 to 5, any strides: q and k come as views of the
    /// fused QKV projection) whose first position is `offset`. The result is contiguous.
    ///
    ///     let rope = RotaryEmbedding(kvChannels: 64, rotaryPercent: 1, base: 10000)
    ///     let rotatedQ = rope(q)                       // q [b, groups, perGroup, s, d]
    public func callAsFunction(_ x: Tensor, offset: Int = 0) -> Tensor {
        let key = TableCache.Key(start: offset, count: x.size(-2), dtype: x.dtype, device: x.device)
        let (cos, sin) = cache.tables(for: key) {
            let (cos, sin) = tables(positions: Array(offset..<offset + x.size(-2)))
            return (cos.cast(to: x.dtype).to(x.device), sin.cast(to: x.dtype).to(x.device))
        }
        return Functional.rotaryEmbedding(x, cos: cos, sin: sin)
    }

    /// Rotates `x [batch, ..., seq, headDim]` whose batch row `b` sits at `rowPositions[b]` (`seq` each),
    /// as left-padded batches of prompts need: the same fused kernel with a table per batch row.
    public func callAsFunction(_ x: Tensor, rowPositions: [[Int]]) -> Tensor {
        precondition(rowPositions.count == x.size(0) && rowPositions.allSatisfy { $0.count == x.size(-2) },
                     "rotary positions \(rowPositions.map(\.count)) do not match x \(x.shape)")
        let (cos, sin) = tables(positions: rowPositions.flatMap { $0 })
        let shape = [x.size(0), x.size(-2), rotaryDim]
        return Functional.rotaryEmbedding(x, cos: cos.reshaped(shape).cast(to: x.dtype).to(x.device),
                                          sin: sin.reshaped(shape).cast(to: x.dtype).to(x.device))
    }
}

/// The rotary tables of the most recent (positions, dtype, device), shared by the copies of one
/// `RotaryEmbedding` value. A class because the cache is state behind a value type's methods.
private final class TableCache: @unchecked Sendable {
    struct Key: Equatable {
        var start: Int, count: Int
        var dtype: DType
        var device: Device
    }

    private let lock = NSLock()
    private var entry: (key: Key, cos: Tensor, sin: Tensor)?

    func tables(for key: Key, make: () -> (Tensor, Tensor)) -> (Tensor, Tensor) {
        lock.lock()
        defer { lock.unlock() }
        if let entry, entry.key == key { return (entry.cos, entry.sin) }
        let (cos, sin) = make()
        entry = (key, cos, sin)
        return (cos, sin)
    }
}
