import MegatronAutograd
import MegatronTensor

/// One pre-norm transformer layer: `x + drop(attn(norm(x)))`, then `h + drop(mlp(norm(h)))`.
public final class TransformerLayer: Module {
    public let inputLayernorm: Module & NormLayer
    public let selfAttention: SelfAttention
    public let preMLPLayernorm: Module & NormLayer
    public let mlp: MLP
    let hiddenDropout: Dropout

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        inputLayernorm = makeNorm(config)
        selfAttention = SelfAttention(config: config, generator: generator, dropoutGenerator: dropoutGenerator)
        preMLPLayernorm = makeNorm(config)
        mlp = MLP(config: config, generator: generator)
        hiddenDropout = Dropout(config.hiddenDropout, generator: dropoutGenerator)
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
    let dropoutGenerator: PhiloxGenerator

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        layers = (0..<config.numLayers).map { _ in
            TransformerLayer(config: config, generator: generator, dropoutGenerator: dropoutGenerator)
        }
        finalLayernorm = makeNorm(config)
        self.dropoutGenerator = dropoutGenerator
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
                h = checkpoint([h], generators: [dropoutGenerator]) { [layer($0[0])] }[0]
            } else {
                h = layer(h)
            }
        }
        return finalLayernorm(h)
    }
}
