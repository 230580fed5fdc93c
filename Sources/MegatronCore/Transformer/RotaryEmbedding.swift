import Foundation
import MegatronAutograd
import MegatronTensor

/// Rotary position embedding as Megatron Core applies it (non-interleaved halves, `rotate_half`), on the
/// first `rotaryPercent` of each head's channels.
public struct RotaryEmbedding {
    public let rotaryDim: Int
    public let base: Float
    /// Tables of the last position range asked for, per dtype and device: every training step asks for
    /// the same `0..<seq`, so they are computed and uploaded once.
    private let cache = TableCache()

    public init(kvChannels: Int, rotaryPercent: Float, base: Float) {
        rotaryDim = Int(Float(kvChannels) * rotaryPercent)
        self.base = base
    }

    /// cos and sin tables `[positions.count, rotaryDim]` for the given positions.
    func tables(positions: [Int]) -> (cos: Tensor, sin: Tensor) {
        let half = rotaryDim / 2
        var cosValues = [Float](repeating: 0, count: positions.count * rotaryDim)
        var sinValues = cosValues
        let inverseFrequencies = (0..<half).map { i in
            Double(Float(1 / Foundation.pow(Double(base), Double(2 * i) / Double(rotaryDim))))
        }
        for (row, pos) in positions.enumerated() {
            for i in 0..<half {
                let angle = Double(pos) * inverseFrequencies[i]
                for j in [i, i + half] {
                    cosValues[row * rotaryDim + j] = Float(Foundation.cos(angle))
                    sinValues[row * rotaryDim + j] = Float(Foundation.sin(angle))
                }
            }
        }
        return (Tensor(shape: [positions.count, rotaryDim], values: cosValues),
                Tensor(shape: [positions.count, rotaryDim], values: sinValues))
    }

    /// Rotates `x [batch, heads, seq, headDim]` whose first position is `offset`.
    public func callAsFunction(_ x: Tensor, offset: Int = 0) -> Tensor {
        let key = TableCache.Key(start: offset, count: x.size(2), dtype: x.dtype, device: x.device)
        let (cos, sin) = cache.tables(for: key) {
            let (cos, sin) = tables(positions: Array(offset..<offset + x.size(2)))
            return (cos.cast(to: x.dtype).to(x.device), sin.cast(to: x.dtype).to(x.device))
        }
        return rotate(x, cos: cos, sin: sin)
    }

    /// Rotates `x [batch, heads, seq, headDim]` whose batch row `b` sits at `rowPositions[b]` (`seq` each),
    /// as left-padded batches of prompts need.
    public func callAsFunction(_ x: Tensor, rowPositions: [[Int]]) -> Tensor {
        precondition(rowPositions.count == x.size(0) && rowPositions.allSatisfy { $0.count == x.size(2) },
                     "rotary positions \(rowPositions.map(\.count)) do not match x \(x.shape)")
        let (cos, sin) = tables(positions: rowPositions.flatMap { $0 })
        let shape = [x.size(0), 1, x.size(2), rotaryDim]
        return rotate(x, cos: cos.reshaped(shape), sin: sin.reshaped(shape))
    }

    /// `x * cos + rotate_half(x) * sin` on the first `rotaryDim` channels; `cos` and `sin` broadcast over `x`
    /// and are cast to x's dtype first, as Megatron does (bf16 activations stay bf16).
    func rotate(_ x: Tensor, cos cosTable: Tensor, sin sinTable: Tensor) -> Tensor {
        let headDim = x.size(3)
        let (cos, sin) = (cosTable.cast(to: x.dtype).to(x.device), sinTable.cast(to: x.dtype).to(x.device))
        let rotated = x.narrow(3, start: 0, length: rotaryDim)
        let halves = rotated.chunk(2, dim: 3)
        let rotatedHalf = concat([-halves[1], halves[0]], dim: 3)
        let out = rotated * cos + rotatedHalf * sin
        if rotaryDim == headDim { return out }
        return concat([out, x.narrow(3, start: rotaryDim, length: headDim - rotaryDim)], dim: 3)
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
