import MegatronAutograd
import MegatronTensor

/// One pre-norm transformer layer: `x + drop(attn(norm(x)))`, then `h + drop(mlp(norm(h)))`.
///
/// Each residual add runs fused into the norm after it (`NormLayer.addNorm`): the first inside the
/// layer, the last in the next layer's input norm or the block's final norm, so inside a block a
/// layer hands on its output as the residual stream plus a still pending branch (`forward`).
/// The hidden dropout of each branch runs fused into that same add (Megatron's bias-dropout-add),
/// drawing its masks in the order an unfused dropout before each add would.
///
/// Under sequence parallelism the norms, dropouts and residual adds work on this rank's `seq / size`
/// positions, so the hidden dropout draws from the split generator.
public final class TransformerLayer: Module {
    public let inputLayernorm: Module & NormLayer
    /// Attention, or Gated DeltaNet in a hybrid model's linear-attention layers.
    public let selfAttention: SequenceMixer
    /// `selfAttention` when it is softmax attention.
    public var attention: SelfAttention? { selfAttention as? SelfAttention }
    public let preMLPLayernorm: Module & NormLayer
    public let mlp: MLP
    let hiddenDropout: Dropout
    /// Submodules recomputed in backward (selective recompute).
    public var recomputedModules: Set<RecomputedModule> = [] {
        didSet {
            attention?.recomputeCoreAttention = recomputedModules.contains(.coreAttention)
            (selfAttention as? GatedDeltaNet)?.recomputeNormOut = recomputedModules.contains(.gdnNormOut)
        }
    }

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator))
    }

    /// `layerNumber` is 1-based, as Megatron numbers layers (it picks the windowed ones); `gatedDeltaNet`: this
    /// layer's `self_attention` is Gated DeltaNet rather than attention.
    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single, layerNumber: Int = 1, gatedDeltaNet: Bool = false) {
        inputLayernorm = makeNorm(config, partialGradient: tensorParallel.sequenceParallel)
        selfAttention = gatedDeltaNet
            ? GatedDeltaNet(config: config, generator: generator, tensorParallel: tensorParallel)
            : SelfAttention(config: config, generator: generator, dropout: dropout, tensorParallel: tensorParallel,
                            layerNumber: layerNumber)
        preMLPLayernorm = makeNorm(config, partialGradient: tensorParallel.sequenceParallel)
        mlp = MLP(config: config, generator: generator, tensorParallel: tensorParallel)
        hiddenDropout = Dropout(config.hiddenDropout, generator: dropout.generator(split: tensorParallel.sequenceParallel))
    }

    override public var children: [(String, Module)] {
        [("input_layernorm", inputLayernorm), ("self_attention", selfAttention),
         ("pre_mlp_layernorm", preMLPLayernorm), ("mlp", mlp), ("hidden_dropout", hiddenDropout)]
    }

    public func callAsFunction(_ x: Tensor, cache: KVCache.Layer? = nil) -> Tensor {
        let out = forward(stream: x, pending: nil, cache: cache)
        return out.stream + hiddenDropout(out.pending)
    }

    /// The layer on the residual stream `stream + dropout(pending)` (just `stream` when `pending` is nil).
    /// Returns the stream after the layer as `stream + dropout(pending)`, the MLP branch neither dropped
    /// nor added yet, so that the next norm can fuse both (every layer's hidden dropout is the same
    /// probability and generator, so the next layer's drops it).
    func forward(stream: Tensor, pending: Tensor?, cache: KVCache.Layer?) -> (stream: Tensor, pending: Tensor) {
        runForward { layerForward(stream: stream, pending: pending, cache: cache) }
    }

    private func layerForward(stream: Tensor, pending: Tensor?, cache: KVCache.Layer?) -> (stream: Tensor, pending: Tensor) {
        let (x, normed) = pending.map { inputLayernorm.addNorm(stream, residual: $0, dropout: hiddenDropout) }
            ?? (stream, inputLayernorm(stream))
        let (h, normedH) = preMLPLayernorm.addNorm(x, residual: selfAttention(normed, cache: cache), dropout: hiddenDropout)
        let mlpOut = recomputedModules.contains(.mlp) ? checkpoint([normedH]) { [self.mlp($0[0])] }[0] : mlp(normedH)
        return (h, mlpOut)
    }
}

/// The decoder stack: `num_layers` transformer layers and a final norm, with optional full recomputation.
public final class TransformerBlock: Module {
    public let layers: [TransformerLayer]
    public let finalLayernorm: Module & NormLayer
    /// Layers whose activations are recomputed in backward (`--recompute-granularity full`).
    public var recomputedLayers: Set<Int> = []
    /// Submodules of every layer recomputed in backward (`--recompute-granularity selective`).
    public var recomputedModules: Set<RecomputedModule> = [] {
        didSet { for layer in layers { layer.recomputedModules = recomputedModules } }
    }
    let dropout: ModelParallelRNG

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator))
    }

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single) {
        layers = (0..<config.numLayers).map { index in
            TransformerLayer(config: config, generator: generator, dropout: dropout, tensorParallel: tensorParallel,
                             layerNumber: index + 1, gatedDeltaNet: config.isGatedDeltaNetLayer(index))
        }
        finalLayernorm = makeNorm(config, partialGradient: tensorParallel.sequenceParallel)
        self.dropout = dropout
    }

    override public var children: [(String, Module)] {
        layers.enumerated().map { ("layers.\($0.offset)", $0.element) } + [("final_layernorm", finalLayernorm)]
    }

    public func callAsFunction(_ x: Tensor, cache: KVCache? = nil) -> Tensor {
        runForward { stack(x, cache: cache) }
    }

    private func stack(_ x: Tensor, cache: KVCache?) -> Tensor {
        // The residual stream between layers is stream + pending (see TransformerLayer.forward).
        var stream = x, pending: Tensor?
        for (i, layer) in layers.enumerated() {
            if cache == nil && recomputedLayers.contains(i) {
                // A recomputed layer keeps only its one input for backward: the pending dropout and add happen here.
                let input = pending.map { stream + layer.hiddenDropout($0) } ?? stream
                stream = checkpoint([input], generators: dropout.all) { [layer($0[0])] }[0]
                pending = nil
            } else {
                (stream, pending) = layer.forward(stream: stream, pending: pending, cache: cache?.layers[i])
            }
        }
        guard let pending else { return finalLayernorm(stream) }
        return finalLayernorm.addNorm(stream, residual: pending, dropout: layers.last?.hiddenDropout).normed
    }
}
