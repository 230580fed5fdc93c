import Foundation

/// YaRN's rescaling of the rotary frequencies, as Megatron Core's `YarnRotaryEmbedding` computes it
/// (`--position-embedding-type yarn` with `--rotary-scaling-factor`, `--yarn-original-max-position-embeddings`,
/// `--yarn-beta-fast`, `--yarn-beta-slow`, `--mscale`, `--mscale-all-dim`,
/// `--[no-]yarn-correction-range-round-to-int`): each frequency blends its interpolated (divided by `factor`)
/// and its original value by a linear ramp over the channels between the correction range's bounds, and the
/// rotary cos / sin are multiplied by the concentration factor. It rotates every channel of a head
/// (Megatron's YaRN ignores `--rotary-percent`).
///
/// ```swift
/// let yarn = YarnScaling(factor: 32, originalMaxPositionEmbeddings: 4096)
/// let frequencies = yarn.inverseFrequencies(dim: 64, base: 10000)
/// ```
public struct YarnScaling: Sendable, Equatable, Codable {
    public var factor: Float
    public var originalMaxPositionEmbeddings: Int
    public var betaFast: Float
    public var betaSlow: Float
    public var mscale: Float
    public var mscaleAllDim: Float
    public var correctionRangeRoundToInt: Bool

    /// Megatron's defaults (`_apply_yarn_config_from_args`).
    public init(factor: Float = 1, originalMaxPositionEmbeddings: Int = 4096, betaFast: Float = 32, betaSlow: Float = 1,
                mscale: Float = 1, mscaleAllDim: Float = 0, correctionRangeRoundToInt: Bool = true) {
        (self.factor, self.originalMaxPositionEmbeddings, self.betaFast, self.betaSlow) =
            (factor, originalMaxPositionEmbeddings, betaFast, betaSlow)
        (self.mscale, self.mscaleAllDim, self.correctionRangeRoundToInt) = (mscale, mscaleAllDim, correctionRangeRoundToInt)
    }

    /// The `dim / 2` inverse frequencies, fp32 as torch forms them.
    public func inverseFrequencies(dim: Int, base: Float) -> [Float] {
        let (low, high) = correctionRange(dim: dim, base: base)
        let span = low == high ? high + 0.001 - low : high - low
        return (0..<dim / 2).map { i in
            let power = Float(Foundation.pow(Double(base), Double(2 * i) / Double(dim)))
            let extrapolated = 1 / power, interpolated = 1 / (factor * power)
            let ramp = Swift.min(Swift.max((Float(i) - low) / span, 0), 1)
            let keep = 1 - ramp   // Megatron's inv_freq_mask
            return interpolated * (1 - keep) + extrapolated * keep
        }
    }

    /// What cos and sin are multiplied by (the "attention factor").
    public var concentrationFactor: Float {
        func scale(_ m: Float) -> Float { factor <= 1 ? 1 : 0.1 * m * Foundation.log(factor) + 1 }
        return scale(mscale) / scale(mscaleAllDim)
    }

    /// The channel (pair) range over which the ramp runs, clamped to [0, dim - 1].
    func correctionRange(dim: Int, base: Float) -> (Float, Float) {
        func correctionDim(_ rotations: Float) -> Double {
            Double(dim) * Foundation.log(Double(originalMaxPositionEmbeddings) / (Double(rotations) * 2 * Double.pi))
                / (2 * Foundation.log(Double(base)))
        }
        var (low, high) = (correctionDim(betaFast), correctionDim(betaSlow))
        if correctionRangeRoundToInt { (low, high) = (low.rounded(.down), high.rounded(.up)) }
        return (Float(Swift.max(low, 0)), Float(Swift.min(high, Double(dim - 1))))
    }

    func validate() throws {
        guard factor > 0 else { throw ConfigError("YaRN's --rotary-scaling-factor must be positive, got \(factor)") }
        guard originalMaxPositionEmbeddings > 0 else {
            throw ConfigError("--yarn-original-max-position-embeddings must be positive, got \(originalMaxPositionEmbeddings)")
        }
        guard betaFast > 0 && betaSlow > 0 else { throw ConfigError("--yarn-beta-fast and --yarn-beta-slow must be positive") }
    }
}
