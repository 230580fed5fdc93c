import MegatronTensor

/// What the module filling a layer's slot is built from: the model's config, the weight-init and dropout
/// generators, the tensor-parallel group, and the layer's 1-based number (as Megatron numbers layers).
public struct LayerBuildContext {
    public let config: TransformerConfig
    /// Draws the weights, in the order the slots are built.
    public let generator: PhiloxGenerator
    public let dropout: ModelParallelRNG
    public let tensorParallel: TensorParallelGroup
    public let layerNumber: Int

    public init(config: TransformerConfig, generator: PhiloxGenerator, dropout: ModelParallelRNG,
                tensorParallel: TensorParallelGroup = .single, layerNumber: Int = 1) {
        self.config = config
        self.generator = generator
        self.dropout = dropout
        self.tensorParallel = tensorParallel
        self.layerNumber = layerNumber
    }
}

/// How to build the module for one typed slot of a layer (Megatron Core's `ModuleSpec`: a module class and
/// its arguments). Another attention, mixer or MLP kind is another spec value, not an edit of `TransformerLayer`.
///
/// ```swift
/// let windowed = ModuleSpec<any SequenceMixer>.selfAttention(window: 128)
/// let mine = ModuleSpec<any SequenceMixer> { context in MyMixer(config: context.config, ...) }
/// ```
public struct ModuleSpec<Built> {
    public let build: (LayerBuildContext) -> Built

    public init(_ build: @escaping (LayerBuildContext) -> Built) { self.build = build }
}

/// What fills a transformer layer's `mlp` slot: the dense MLP or a mixture of experts (`MoELayer`).
public protocol FeedForward: Module {
    /// `x [batch, seq, hidden] -> [batch, seq, hidden]` (this rank's positions under sequence parallelism).
    func callAsFunction(_ x: Tensor) -> Tensor
}

extension MLP: FeedForward {}

extension ModuleSpec where Built == any Module & NormLayer {
    /// The config's norm over the hidden size; under sequence parallelism it sees this rank's positions only,
    /// so its gradients are partial.
    public static var hiddenNorm: Self {
        Self { makeNorm($0.config, partialGradient: $0.tensorParallel.sequenceParallel) }
    }
}

extension ModuleSpec where Built == any SequenceMixer {
    /// Softmax self-attention, over a sliding `window` of keys or (nil) all earlier ones.
    public static func selfAttention(window: Int?) -> Self {
        Self { SelfAttention(config: $0.config, generator: $0.generator, dropout: $0.dropout,
                             tensorParallel: $0.tensorParallel, window: window) }
    }

    /// Gated DeltaNet, the linear-attention mixer of hybrid models (`config.gatedDeltaNet` gives its sizes).
    public static var gatedDeltaNet: Self {
        Self { GatedDeltaNet(config: $0.config, generator: $0.generator, tensorParallel: $0.tensorParallel) }
    }
}

extension ModuleSpec where Built == any FeedForward {
    /// The dense MLP (`linear_fc1`, activation, `linear_fc2`).
    public static var mlp: Self {
        Self { MLP(config: $0.config, generator: $0.generator, tensorParallel: $0.tensorParallel) }
    }
}

/// The typed slots of one pre-norm transformer layer and what fills each (Megatron Core's
/// `TransformerLayerSubmodules`); `TransformerLayer` builds them in this order, which is the order they draw
/// their weights in.
public struct TransformerLayerSpec {
    public var inputLayernorm: ModuleSpec<any Module & NormLayer>
    /// The `self_attention` slot: attention or another sequence mixer.
    public var selfAttention: ModuleSpec<any SequenceMixer>
    public var preMLPLayernorm: ModuleSpec<any Module & NormLayer>
    public var mlp: ModuleSpec<any FeedForward>

    public init(inputLayernorm: ModuleSpec<any Module & NormLayer> = .hiddenNorm, selfAttention: ModuleSpec<any SequenceMixer>,
                preMLPLayernorm: ModuleSpec<any Module & NormLayer> = .hiddenNorm, mlp: ModuleSpec<any FeedForward> = .mlp) {
        self.inputLayernorm = inputLayernorm
        self.selfAttention = selfAttention
        self.preMLPLayernorm = preMLPLayernorm
        self.mlp = mlp
    }
}

/// The per-layer specs of a decoder and its final norm (Megatron Core's `TransformerBlockSubmodules`).
///
/// ```swift
/// var spec = TransformerBlockSpec.gpt(config)
/// spec.layers[1].selfAttention = .gatedDeltaNet      // a hybrid layer, the rest as the config says
/// let block = TransformerBlock(spec: spec, config: config, generator: gen, dropout: rng)
/// ```
public struct TransformerBlockSpec {
    /// One spec per layer, first layer first.
    public var layers: [TransformerLayerSpec]
    public var finalLayernorm: ModuleSpec<any Module & NormLayer>

    public init(layers: [TransformerLayerSpec], finalLayernorm: ModuleSpec<any Module & NormLayer> = .hiddenNorm) {
        self.layers = layers
        self.finalLayernorm = finalLayernorm
    }

    /// The GPT decoder `config` describes (Megatron's `get_gpt_decoder_block_spec` with local layer specs):
    /// Gated DeltaNet where `--linear-attention-freq` puts it, elsewhere self-attention with the sliding
    /// window where `--window-size` / `--window-attn-skip-freq` put it; a mixture of experts where `--moe-layer-freq`
    /// puts it, else a dense MLP.
    public static func gpt(_ config: TransformerConfig) -> TransformerBlockSpec {
        TransformerBlockSpec(layers: (0..<config.numLayers).map { index in
            TransformerLayerSpec(selfAttention: config.isGatedDeltaNetLayer(index)
                ? .gatedDeltaNet
                : .selfAttention(window: config.slidingWindow(layerNumber: index + 1)),
                                 mlp: config.isMoELayer(index) ? .moe : .mlp)
        })
    }
}
