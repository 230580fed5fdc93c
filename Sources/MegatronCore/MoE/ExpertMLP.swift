import MegatronAutograd
import MegatronTensor

/// One expert (or the shared expert): `linear_fc1`, the config's activation or gated unit, each token's
/// routing probability applied to the activation (as Megatron's MLP with `per_token_scale`), `linear_fc2`.
/// Its parameters carry the `expert` attribute (the shared expert's do not).
public final class ExpertMLP: Module {
    public let config: TransformerConfig
    public let linearFC1: Linear
    public let linearFC2: Linear

    public init(config: TransformerConfig, ffnHiddenSize: Int, isExpert: Bool, generator: PhiloxGenerator) {
        self.config = config
        let fc1Width = config.gatedLinearUnit ? 2 * ffnHiddenSize : ffnHiddenSize
        linearFC1 = Linear(inFeatures: config.hiddenSize, outFeatures: fc1Width, bias: false, initMethod: config.initMethod,
                           dtype: config.paramsDType, generator: generator)
        linearFC2 = Linear(inFeatures: ffnHiddenSize, outFeatures: config.hiddenSize, bias: false,
                           initMethod: config.outputLayerInitMethod, dtype: config.paramsDType, generator: generator)
        for linear in [linearFC1, linearFC2] { linear.setAttributesOfParameters { $0.expert = isExpert } }
    }

    override public var children: [(String, Module)] { [("linear_fc1", linearFC1), ("linear_fc2", linearFC2)] }

    /// `tokens [n, hidden] -> [n, hidden]`, the activation scaled by `probs [n, 1]` (fp32) when given.
    public func callAsFunction(_ tokens: Tensor, probs: Tensor? = nil) -> Tensor {
        runForward {
            linearFC2(Self.activation(linearFC1(tokens), probs: probs, config: config, dtype: tokens.dtype))
        }
    }

    /// FC1's output `h [n, fc1Width]` through the config's activation or gated unit, scaled by `probs [n, 1]`
    /// when given, in `dtype`: what lies between an expert's two GEMMs (also for all experts' rows at once).
    static func activation(_ h: Tensor, probs: Tensor?, config: TransformerConfig, dtype: DType) -> Tensor {
        var activated: Tensor
        if let unit = config.gatedUnit {
            // SwiGLU, or gpt-oss's clamped quick GeGLU with its linear offset, over [gate; linear] halves.
            activated = record("gatedLinearUnit", inputs: [h], output: Ops.gatedLinearUnit(h.detached(), unit)) { g in
                [Ops.gatedLinearUnitBackward(h.detached(), gradOutput: g, unit)]
            }
        } else if config.gatedLinearUnit {
            // dim 1, not -1: the split's backward indexes strides by the dimension as given.
            let parts = h.chunk(2, dim: 1)
            activated = parts[0].apply(MLP.unaryOp(config.activation)) * parts[1]
        } else {
            activated = h.apply(MLP.unaryOp(config.activation))
        }
        if let probs { activated = (activated * probs).to(dtype) }
        return activated
    }
}
