import MegatronAutograd
import MegatronTensor

/// The feed-forward block: `linear_fc1`, activation (or a gated unit: SwiGLU, gpt-oss's clamped quick GeGLU
/// with its linear offset), `linear_fc2`.
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
                                         splitHalves: config.gatedLinearUnit, initMethod: config.initMethod,
                                         dtype: config.paramsDType, group: tensorParallel, generator: generator)
        linearFC2 = RowParallelLinear(inFeatures: config.ffnHiddenSize, outFeatures: config.hiddenSize,
                                      bias: config.addBiasLinear, initMethod: config.outputLayerInitMethod,
                                      dtype: config.paramsDType, group: tensorParallel, generator: generator)
    }

    override public var children: [(String, Module)] { [("linear_fc1", linearFC1), ("linear_fc2", linearFC2)] }

    /// The activation's output is not kept for backward: `linear_fc2` recomputes it from `linear_fc1`'s
    /// output (one elementwise pass), which halves the MLP's activation memory. Tanh GeLU runs as one
    /// primitive (`Functional.geluMLP`) between the layers' communication, so on the GPU the activation
    /// and its gradient ride in the GEMM epilogues.
    public func callAsFunction(_ x: Tensor) -> Tensor { runForward { feedForward(x) } }

    private func feedForward(_ x: Tensor) -> Tensor {
        // FP8 layers quantize between the GEMMs, so the GeLU cannot ride in their epilogues.
        if !config.gatedLinearUnit, config.activation == .gelu, linearFC1.fp8 == nil, linearFC2.fp8 == nil { return geluMLP(x) }
        let h = linearFC1(x)
        if let unit = config.gatedUnit { return linearFC2(activationOf: h, .glu(unit)) }
        switch (config.gatedLinearUnit, config.activation) {
        case (true, let act):
            let parts = h.chunk(2, dim: -1)
            return linearFC2(parts[0].apply(Self.unaryOp(act)) * parts[1])
        case (false, let act): return linearFC2(activationOf: h, .unary(Self.unaryOp(act)))
        }
    }

    /// `linear_fc2(gelu(linear_fc1(x)))` with each layer's communication around the fused local product:
    /// fc1's input is gathered (or copied) as `ColumnParallelLinear` does, fc2's partial output reduced
    /// (or reduce-scattered) and its bias added as `RowParallelLinear` does. `linear_fc2`'s hooks run around
    /// the fused product; `linear_fc1` runs no forward of its own here.
    private func geluMLP(_ x: Tensor) -> Tensor {
        precondition(!linearFC1.gatherOutput, "the MLP's linear_fc1 keeps its outputs split")
        let input = ColumnParallelLinear.enter(x, linearFC1.group)
        return linearFC2.forward { fc2Bias in
            Functional.geluMLP(input, fc1Weight: linearFC1.weight, fc1Bias: linearFC1.bias,
                               fc2Weight: linearFC2.weight, fc2Bias: fc2Bias)
        }
    }

    static func unaryOp(_ activation: TransformerConfig.Activation) -> UnaryOp {
        switch activation {
        case .gelu: .geluTanh
        case .geluExact: .geluErf
        case .silu: .silu
        case .squaredRelu: .squaredRelu
        case .quickGelu: preconditionFailure("quick_gelu runs gated only (TransformerConfig.validate)")
        }
    }
}
