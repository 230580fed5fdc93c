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
    /// Attention, or another sequence mixer (Gated DeltaNet in a hybrid model's linear-attention layers).
    public let selfAttention: SequenceMixer
    /// `selfAttention` when it is softmax attention.
    public var attention: SelfAttention? { selfAttention as? SelfAttention }
    public let preMLPLayernorm: Module & NormLayer
    /// The dense MLP, or another feed-forward block.
    public let mlp: FeedForward
    let hiddenDropout: Dropout
    /// Submodules recomputed in backward (selective recompute).
    public var recomputedModules: Set<RecomputedModule> = [] {
        didSet { selfAttention.recompute(recomputedModules) }
    }

    /// Builds each slot as `spec` says, in slot order, for layer `context.layerNumber`.
    ///
    /// ```swift
    /// let context = LayerBuildContext(config: config, generator: gen, dropout: rng, layerNumber: 1)
    /// let layer = TransformerLayer(spec: TransformerLayerSpec(selfAttention: .selfAttention(window: nil)), context: context)
    /// ```
    public init(spec: TransformerLayerSpec, context: LayerBuildContext) {
        inputLayernorm = spec.inputLayernorm.build(context)
        selfAttention = spec.selfAttention.build(context)
        preMLPLayernorm = spec.preMLPLayernorm.build(context)
        mlp = spec.mlp.build(context)
        hiddenDropout = Dropout(context.config.hiddenDropout,
                                generator: context.dropout.generator(split: context.tensorParallel.sequenceParallel))
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

/// The decoder stack: transformer layers, each built from its spec (`TransformerBlockSpec`), and a final norm,
/// with optional full recomputation.
public final class TransformerBlock: Module {
    public let layers: [TransformerLayer]
    /// The index in the whole decoder of each of `layers`: a pipeline stage holds some of the layers (one
    /// slice per model chunk), named by their global index so checkpoints keep the whole model's names.
    public let layerIndices: [Int]
    /// The final norm; nil on a pipeline stage that does not end the decoder.
    public let finalLayernorm: (Module & NormLayer)?
    /// Layers whose activations are recomputed in backward (`--recompute-granularity full`), by position in
    /// their model chunk (in `layers` for the whole model), as Megatron counts them per chunk.
    public var recomputedLayers: Set<Int> = []
    /// Submodules of every layer recomputed in backward (`--recompute-granularity selective`).
    public var recomputedModules: Set<RecomputedModule> = [] {
        didSet { for layer in layers { layer.recomputedModules = recomputedModules } }
    }
    let dropout: ModelParallelRNG

    public convenience init(config: TransformerConfig, generator: PhiloxGenerator, dropoutGenerator: PhiloxGenerator) {
        self.init(config: config, generator: generator, dropout: ModelParallelRNG(single: dropoutGenerator))
    }

    /// The decoder `spec` describes (by default the GPT decoder of `config`, `TransformerBlockSpec.gpt`); a
    /// pipeline stage keeps only the layers in `keeping` (all by default) and the final norm if `finalNorm`.
    /// Weights are drawn from `generator` in the whole decoder's order (layers before the kept ones are built
    /// and dropped), so a stage's layers equal the single-rank model's.
    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single, spec: TransformerBlockSpec? = nil,
                keeping kept: [Int]? = nil, finalNorm: Bool = true) {
        let spec = spec ?? .gpt(config)
        let kept = Set(kept ?? Array(0..<spec.layers.count))
        let drawn = finalNorm ? spec.layers.count : (kept.max().map { $0 + 1 } ?? 0)
        var layers: [TransformerLayer] = []
        for (index, layerSpec) in spec.layers.prefix(drawn).enumerated() {
            let layer = TransformerLayer(spec: layerSpec, context: LayerBuildContext(config: config, generator: generator, dropout: dropout,
                                                                                     tensorParallel: tensorParallel, layerNumber: index + 1))
            if kept.contains(index) { layers.append(layer) }
        }
        self.layers = layers
        layerIndices = (0..<drawn).filter { kept.contains($0) }
        finalLayernorm = finalNorm
            ? spec.finalLayernorm.build(LayerBuildContext(config: config, generator: generator, dropout: dropout,
                                                          tensorParallel: tensorParallel, layerNumber: spec.layers.count))
            : nil
        self.dropout = dropout
    }

    override public var children: [(String, Module)] {
        zip(layerIndices, layers).map { ("layers.\($0.0)", $0.1) }
            + (finalLayernorm.map { [("final_layernorm", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor, cache: KVCache? = nil) -> Tensor {
        runForward { stack(x, cache: cache, positions: layers.indices, finalNorm: finalLayernorm != nil) }
    }

    /// One model chunk of a pipeline stage: the layers at `positions` of `layers`, then the final norm if
    /// `finalNorm` (the chunk that ends the decoder).
    public func forward(_ x: Tensor, positions: Range<Int>, finalNorm: Bool) -> Tensor {
        precondition(!finalNorm || finalLayernorm != nil, "only the stage that ends the decoder holds the final norm")
        return runForward { stack(x, cache: nil, positions: positions, finalNorm: finalNorm) }
    }

    private func stack(_ x: Tensor, cache: KVCache?, positions: Range<Int>, finalNorm: Bool) -> Tensor {
        // The residual stream between layers is stream + pending (see TransformerLayer.forward).
        var stream = x, pending: Tensor?
        for i in positions {
            let layer = layers[i]
            if cache == nil && recomputedLayers.contains(i - positions.lowerBound) {
                // A recomputed layer keeps only its one input for backward: the pending dropout and add happen here.
                let input = pending.map { stream + layer.hiddenDropout($0) } ?? stream
                stream = checkpoint([input], generators: dropout.all) { [layer($0[0])] }[0]
                pending = nil
            } else {
                (stream, pending) = layer.forward(stream: stream, pending: pending, cache: cache?.layers[i])
            }
        }
        // A model chunk without the final norm hands on the residual stream itself.
        let last = positions.last.map { layers[$0] }
        guard finalNorm, let finalLayernorm else { return pending.map { stream + last!.hiddenDropout($0) } ?? stream }
        guard let pending else { return finalLayernorm(stream) }
        return finalLayernorm.addNorm(stream, residual: pending, dropout: last?.hiddenDropout).normed
    }
}
