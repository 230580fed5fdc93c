import MegatronTensor

/// Builds the normalization the config names (LayerNorm or RMSNorm) over `dimension` values; zero-centered
/// (`1 + w`) for every norm of the model with `layernormZeroCenteredGamma`, as Transformer Engine's norms.
/// `partialGradient`: each rank computes only part of the norm's gradients, from its positions (sequence
/// parallelism) or its heads (a per-head norm on several ranks): `ParameterAttributes.partialGradient`.
func makeNorm(_ config: TransformerConfig, dimension: Int? = nil, partialGradient: Bool) -> Module & NormLayer {
    let d = dimension ?? config.hiddenSize
    let norm: Module & NormLayer = switch config.normalization {
    case .layerNorm:
        LayerNorm(d, epsilon: config.layernormEpsilon, dtype: config.paramsDType,
                  zeroCenteredGamma: config.layernormZeroCenteredGamma)
    case .rmsNorm:
        RMSNorm(d, epsilon: config.layernormEpsilon, dtype: config.paramsDType,
                zeroCenteredGamma: config.layernormZeroCenteredGamma)
    }
    norm.setAttributesOfParameters { $0.partialGradient = partialGradient }
    return norm
}

/// A normalization layer, whichever kind.
public protocol NormLayer {
    func callAsFunction(_ x: Tensor) -> Tensor
    /// `x + dropout(residual)` and the norm of that sum (the residual add, and the residual branch's
    /// dropout when `dropout` is given and training, fused into the norm after it).
    func addNorm(_ x: Tensor, residual: Tensor, dropout: Dropout?) -> (sum: Tensor, normed: Tensor)
}

extension NormLayer {
    /// `x + residual` and the norm of that sum.
    public func addNorm(_ x: Tensor, residual: Tensor) -> (sum: Tensor, normed: Tensor) { addNorm(x, residual: residual, dropout: nil) }
}

extension LayerNorm: NormLayer {}
extension RMSNorm: NormLayer {}
