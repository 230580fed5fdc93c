import Foundation
import MegatronAutograd
import MegatronTensor

/// Rotary position embedding as Megatron Core applies it (non-interleaved halves, `rotate_half`), on the
/// first `rotaryPercent` of each head's channels.
public struct RotaryEmbedding {
    public let rotaryDim: Int
    public let base: Float

    public init(kvChannels: Int, rotaryPercent: Float, base: Float) {
        rotaryDim = Int(Float(kvChannels) * rotaryPercent)
        self.base = base
    }

    /// cos and sin tables `[seq, rotaryDim]` for positions `offset..<offset + sequenceLength`.
    func tables(sequenceLength: Int, offset: Int = 0) -> (cos: Tensor, sin: Tensor) {
        let half = rotaryDim / 2
        var cosValues = [Float](repeating: 0, count: sequenceLength * rotaryDim)
        var sinValues = cosValues
        for row in 0..<sequenceLength {
            let pos = row + offset
            for i in 0..<half {
                let inverseFrequency = 1 / Foundation.pow(Double(base), Double(2 * i) / Double(rotaryDim))
                let angle = Double(pos) * Double(Float(inverseFrequency))
                for j in [i, i + half] {
                    cosValues[row * rotaryDim + j] = Float(Foundation.cos(angle))
                    sinValues[row * rotaryDim + j] = Float(Foundation.sin(angle))
                }
            }
        }
        return (Tensor(shape: [sequenceLength, rotaryDim], values: cosValues),
                Tensor(shape: [sequenceLength, rotaryDim], values: sinValues))
    }

    /// Rotates `x [batch, heads, seq, headDim]` whose first position is `offset`.
    public func callAsFunction(_ x: Tensor, offset: Int = 0) -> Tensor {
        let seq = x.size(2), headDim = x.size(3)
        let (cosCPU, sinCPU) = tables(sequenceLength: seq, offset: offset)
        let (cos, sin) = (cosCPU.to(x.device), sinCPU.to(x.device))
        let rotated = x.narrow(3, start: 0, length: rotaryDim)
        let halves = rotated.chunk(2, dim: 3)
        let rotatedHalf = concat([-halves[1], halves[0]], dim: 3)
        let out = rotated * cos + rotatedHalf * sin
        if rotaryDim == headDim { return out }
        return concat([out, x.narrow(3, start: rotaryDim, length: headDim - rotaryDim)], dim: 3)
    }
}
