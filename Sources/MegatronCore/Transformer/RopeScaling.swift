import Foundation

/// A rescaling of the rotary frequencies that stretches a model's context beyond the length it was
/// pretrained on (Hugging Face's `rope_scaling`, Megatron's `--use-rope-scaling`).
///
/// ```swift
/// let scaling = RopeScaling.llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)
/// let frequencies = scaling.apply(to: [1, 0.1, 0.01, 0.001])
/// ```
public enum RopeScaling: Sendable, Equatable, Codable {
    /// Every frequency divided by `factor` (positions interpolated linearly).
    case linear(factor: Float)
    /// Llama 3.1's: wavelengths longer than `originalMaxPositionEmbeddings / lowFreqFactor` are stretched by
    /// `factor`, those shorter than `originalMaxPositionEmbeddings / highFreqFactor` kept, and those between
    /// blended smoothly from one to the other.
    case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositionEmbeddings: Int)

    /// Megatron's `--use-rope-scaling --rope-scaling-factor F`: Llama 3 scaling with its fixed low / high
    /// frequency factors 1 and 4 and original context 8192.
    public static func megatron(factor: Float) -> RopeScaling {
        .llama3(factor: factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192)
    }

    /// The inverse frequencies, rescaled. Computed in fp32 as PyTorch computes them (Megatron and Hugging
    /// Face alike), so the rotary tables match theirs to the last bit that fp32 rounding allows.
    public func apply(to inverseFrequencies: [Float]) -> [Float] {
        switch self {
        case .linear(let factor):
            return inverseFrequencies.map { $0 / factor }
        case .llama3(let factor, let low, let high, let original):
            let context = Float(original)
            let (longest, shortest) = (context / low, context / high)
            return inverseFrequencies.map { frequency in
                let wavelength = 2 * Float.pi / frequency
                if wavelength < shortest { return frequency }
                if wavelength > longest { return frequency / factor }
                let smooth = (context / wavelength - low) / (high - low)
                return (1 - smooth) * frequency / factor + smooth * frequency
            }
        }
    }

    func validate() throws {
        switch self {
        case .linear(let factor):
            guard factor > 0 else { throw ConfigError("rope_scaling factor must be positive, got \(factor)") }
        case .llama3(let factor, let low, let high, let original):
            guard factor > 0 else { throw ConfigError("rope_scaling factor must be positive, got \(factor)") }
            guard low > 0 && high > low else {
                throw ConfigError("rope_scaling needs 0 < low_freq_factor < high_freq_factor, got \(low) and \(high)")
            }
            guard original > 0 else {
                throw ConfigError("rope_scaling original_max_position_embeddings must be positive, got \(original)")
            }
        }
    }
}
