import MegatronAutograd
import MegatronTensor

/// One pre-norm transformer layer: `x + drop(attn(norm(x)))`, then `h + drop(mlp(norm(h)))`.
///
/// Under sequence parallelism the norms, dropouts and residual adds work on this rank's `seq / size`
/// positions, so the hidden dropout draws from the split generator.
public final class TransformerLayer: Module {
    public let inputLayernorm: Module & NormLayer
    public let selfAttention: SelfAttention
    public let preMLPLayernorm: Module & NormLayer
    public let mlp: MLP
    let hiddenDropout: Dropout

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator))
    }

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single) {
        inputLayernorm = makeNorm(config)
        selfAttention = SelfAttention(config: config, generator: generator, dropout: dropout, tensorParallel: tensorParallel)
        preMLPLayernorm = makeNorm(config)
        mlp = MLP(config: config, generator: generator, tensorParallel: tensorParallel)
        hiddenDropout = Dropout(config.hiddenDropout, generator: dropout.generator(split: tensorParallel.sequenceParallel))
    }

    override public var children: [(String, Module)] {
        [("input_layernorm", inputLayernorm), ("self_attention", selfAttention),
         ("pre_mlp_layernorm", preMLPLayernorm), ("mlp", mlp), ("hidden_dropout", hiddenDropout)]
    }

    public func callAsFunction(_ x: Tensor, cache: KVCache.Layer? = nil) -> Tensor {
        let h = x + hiddenDropout(selfAttention(inputLayernorm(x), cache: cache))
        return h + hiddenDropout(mlp(preMLPLayernorm(h)))
    }
}

/// The decoder stack: `num_layers` transformer layers and a final norm, with optional full recomputation.
public final class TransformerBlock: Module {
    public let layers: [TransformerLayer]
    public let finalLayernorm: Module & NormLayer
    /// Layers whose activations are recomputed in backward (`--recompute-granularity full`).
    public var recomputedLayers: Set<Int> = []
    let dropout: ModelParallelRNG

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator))
    }

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single) {
        layers = (0..<config.numLayers).map { _ in
            TransformerLayer(config: config, generator: generator, dropout: dropout, tensorParallel: tensorParallel)
        }
        finalLayernorm = makeNorm(config)
        self.dropout = dropout
    }

    override public var children: [(String, Module)] {
        layers.enumerated().map { ("layers.\($0.offset)", $0.element) } + [("final_layernorm", finalLayernorm)]
    }

    public func callAsFunction(_ x: Tensor, cache: KVCache? = nil) -> Tensor {
        var h = x
        for (i, layer) in layers.enumerated() {
            if let cache {
                h = layer(h, cache: cache.layers[i])
            } else if recomputedLayers.contains(i) {
                h = checkpoint([h], generators: dropout.all) { [layer($0[0])] }[0]
            } else {
                h = layer(h)
            }
        }
        return finalLayernorm(h)
    }
}
