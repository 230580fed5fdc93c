import MegatronAutograd
import MegatronTensor

/// The feed-forward block: `linear_fc1`, activation (or SwiGLU when gated), `linear_fc2`.
///
/// With a tensor-parallel group, `linear_fc1` is column-parallel and `linear_fc2` row-parallel over
/// `ffn_hidden_size`. A gated `linear_fc1` splits its gate half and its up half separately, as Megatron
/// does, so each rank's rows are `[gate slice; up slice]` and the activation stays local.
public final class MLP: Module {
    public let config: TransformerConfig
    public let linearFC1: ColumnParallelLinear
    public let linearFC2: RowParallelLinear

    public init(config: TransformerConfig, generator: PhiloxGenerator, tensorParallel: TensorParallelGroup = .single) {
        precondition(config.ffnHiddenSize % tensorParallel.size == 0,
                     "ffn_hidden_size (\(config.ffnHiddenSize)) must be divisible by the tensor-parallel size (\(tensorParallel.size))")
        self.config = config
        let fc1Width = config.gatedLinearUnit ? 2 * config.ffnHiddenSize : config.ffnHiddenSize
        linearFC1 = ColumnParallelLinear(inFeatures: config.hiddenSize, outFeatures: fc1Width, bias: config.addBiasLinear,
                                         splitHalves: config.gatedLinearUnit, initStd: config.initMethodStd,
                                         dtype: config.paramsDType, group: tensorParallel, generator: generator)
        linearFC2 = RowParallelLinear(inFeatures: config.ffnHiddenSize, outFeatures: config.hiddenSize,
                                      bias: config.addBiasLinear, initStd: config.outputLayerInitStd,
                                      dtype: config.paramsDType, group: tensorParallel, generator: generator)
    }

    override public var children: [(String, Module)] { [("linear_fc1", linearFC1), ("linear_fc2", linearFC2)] }

    /// The activation's output is not kept for backward: `linear_fc2` recomputes it from `linear_fc1`'s
    /// output (one elementwise pass), which halves the MLP's activation memory.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = linearFC1(x)
        switch (config.gatedLinearUnit, config.activation) {
        case (true, .silu): return linearFC2(activationOf: h, .swiglu)
        case (true, let act):
            let parts = h.chunk(2, dim: -1)
            return linearFC2(parts[0].apply(Self.unaryOp(act)) * parts[1])
        case (false, let act): return linearFC2(activationOf: h, .unary(Self.unaryOp(act)))
        }
    }

    static func unaryOp(_ activation: TransformerConfig.Activation) -> UnaryOp {
        switch activation {
        case .gelu: .geluTanh
        case .geluExact: .geluErf
        case .silu: .silu
        }
    }
}
