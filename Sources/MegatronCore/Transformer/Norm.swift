import MegatronTensor

/// Builds the normalization the config names (LayerNorm or RMSNorm) over `dimension` values; zero-centered
/// (`1 + w`) for every norm of the model with `layernormZeroCenteredGamma`, as Transformer Engine's norms.
func makeNorm(_ config: TransformerConfig, dimension: Int? = nil) -> Module & NormLayer {
    let d = dimension ?? config.hiddenSize
    switch config.normalization {
    case .layerNorm:
        return LayerNorm(d, epsilon: config.layernormEpsilon, dtype: config.paramsDType,
                         zeroCenteredGamma: config.layernormZeroCenteredGamma)
    case .rmsNorm:
        return RMSNorm(d, epsilon: config.layernormEpsilon, dtype: config.paramsDType,
                       zeroCenteredGamma: config.layernormZeroCenteredGamma)
    }
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
