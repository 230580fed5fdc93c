import MegatronTensor

/// The shape and options of a transformer stack, with Megatron Core's field names, validated on creation.
///
/// ```swift
/// let config = try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4)
/// ```
public struct TransformerConfig: Sendable, Equatable, Codable {
    public enum Normalization: String, Sendable, Codable { case layerNorm = "LayerNorm", rmsNorm = "RMSNorm" }
    /// The MLP's non-linearity: `gelu` is the tanh approximation (Megatron's fused bias-GeLU), `geluExact`
    /// the erf form (`F.gelu`, used when that fusion is off), `squaredRelu` relu(x)² (`--squared-relu`).
    /// `quickGelu` is x·sigmoid(1.702x), the gate of `--quick-geglu`.
    public enum Activation: String, Sendable, Codable {
        case gelu, geluExact = "gelu_exact", silu, squaredRelu = "squared_relu", quickGelu = "quick_gelu"
    }
    /// The attention softmax (`--softmax-type`): plain, with a zero sink logit per head (`off-by-one`), or
    /// with a learned one (`learnable`, the parameter `core_attention.softmax_offset`).
    public enum SoftmaxType: String, Sendable, Codable { case vanilla, offByOne = "off-by-one", learnable }
    public enum PositionEmbedding: String, Sendable, Codable { case learnedAbsolute = "learned_absolute", rope, none }

    public var numLayers: Int
    public var hiddenSize: Int
    public var numAttentionHeads: Int
    /// Key/value head groups (GQA); equal to the head count for plain multi-head attention.
    public var numQueryGroups: Int
    /// Width of one attention head.
    public var kvChannels: Int
    public var ffnHiddenSize: Int
    public var normalization: Normalization
    public var layernormEpsilon: Float
    /// SwiGLU-style gated MLP (`linear_fc1` then holds gate and up projections).
    public var gatedLinearUnit: Bool
    public var activation: Activation
    public var addBiasLinear: Bool
    public var addQKVBias: Bool
    public var qkLayernorm: Bool
    public var hiddenDropout: Float
    public var attentionDropout: Float
    public var positionEmbeddingType: PositionEmbedding
    public var rotaryBase: Float
    public var rotaryPercent: Float
    public var initMethodStd: Float
    public var paramsDType: DType
    /// Rescaling of the rotary frequencies (Llama 3.x, linear); nil: none.
    public var ropeScaling: RopeScaling?
    /// Norm weights stored as `w` and applied as `1 + w`, initialized to zero (`--apply-layernorm-1p`).
    public var layernormZeroCenteredGamma: Bool
    /// Std of the embeddings' normal init; `initMethodStd` when nil (`--embedding-init-method-std`).
    public var embeddingInitMethodStd: Float?
    /// Xavier-uniform instead of normal init for every weight matrix (`--init-method-xavier-uniform`).
    public var initMethodXavierUniform: Bool
    // gated delta net
    /// Each attention head's output scaled by sigmoid of a gate that `linear_qkv` also produces (`--attention-output-gate`).
    public var attentionOutputGate: Bool
    /// The Gated DeltaNet layers of a hybrid model; nil: every layer is attention.
    public var gatedDeltaNet: GatedDeltaNetConfig?
    // gpt-oss
    /// Added to the linear half of a gated unit: `act(gate) * (linear + offset)` (`--glu-linear-offset`).
    public var gluLinearOffset: Float = 0
    /// A gated unit's gate clamped to at most this, its linear half to ±this (`--activation-func-clamp-value`).
    public var activationFuncClampValue: Float?
    public var softmaxType: SoftmaxType = .vanilla
    /// Keys before `window` positions back are hidden from each query in windowed layers (`--window-size W,0`);
    /// nil: no sliding window.
    public var slidingWindow: Int?
    /// Which layers the window applies to (`--window-attn-skip-freq`); nil: every layer.
    public var windowAttnSkipFreq: LayerPattern?
    /// YaRN rotary embeddings (`--position-embedding-type yarn`; `positionEmbeddingType` is then `rope`).
    public var yarn: YarnScaling?
    /// The mixture-of-experts layers (`--num-experts`, `--moe-*`); nil: every MLP is dense.
    public var moe: MoEConfig?

    public init(
        numLayers: Int, hiddenSize: Int, numAttentionHeads: Int, numQueryGroups: Int? = nil,
        kvChannels: Int? = nil, ffnHiddenSize: Int? = nil, normalization: Normalization = .layerNorm,
        layernormEpsilon: Float = 1e-5, gatedLinearUnit: Bool = false, activation: Activation = .gelu,
        addBiasLinear: Bool = true, addQKVBias: Bool? = nil, qkLayernorm: Bool = false,
        hiddenDropout: Float = 0.1, attentionDropout: Float = 0.1,
        positionEmbeddingType: PositionEmbedding = .learnedAbsolute, rotaryBase: Float = 10000,
        rotaryPercent: Float = 1, initMethodStd: Float = 0.02, paramsDType: DType = .float32,
        ropeScaling: RopeScaling? = nil,
        layernormZeroCenteredGamma: Bool = false, embeddingInitMethodStd: Float? = nil,
        initMethodXavierUniform: Bool = false, attentionOutputGate: Bool = false,
        gatedDeltaNet: GatedDeltaNetConfig? = nil,
        gluLinearOffset: Float = 0, activationFuncClampValue: Float? = nil, softmaxType: SoftmaxType = .vanilla,
        slidingWindow: Int? = nil, windowAttnSkipFreq: LayerPattern? = nil, yarn: YarnScaling? = nil,
        moe: MoEConfig? = nil
    ) throws {
        self.numLayers = numLayers
        self.hiddenSize = hiddenSize
        self.numAttentionHeads = numAttentionHeads
        self.numQueryGroups = numQueryGroups ?? numAttentionHeads
        self.kvChannels = kvChannels ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.ffnHiddenSize = ffnHiddenSize ?? 4 * hiddenSize
        self.normalization = normalization
        self.layernormEpsilon = layernormEpsilon
        self.gatedLinearUnit = gatedLinearUnit
        self.activation = activation
        self.addBiasLinear = addBiasLinear
        self.addQKVBias = addQKVBias ?? addBiasLinear
        self.qkLayernorm = qkLayernorm
        self.hiddenDropout = hiddenDropout
        self.attentionDropout = attentionDropout
        self.positionEmbeddingType = positionEmbeddingType
        self.rotaryBase = rotaryBase
        self.rotaryPercent = rotaryPercent
        self.initMethodStd = initMethodStd
        self.paramsDType = paramsDType
        self.ropeScaling = ropeScaling
        self.layernormZeroCenteredGamma = layernormZeroCenteredGamma
        self.embeddingInitMethodStd = embeddingInitMethodStd
        self.initMethodXavierUniform = initMethodXavierUniform
        self.attentionOutputGate = attentionOutputGate
        self.gatedDeltaNet = gatedDeltaNet
        self.gluLinearOffset = gluLinearOffset
        self.activationFuncClampValue = activationFuncClampValue
        self.softmaxType = softmaxType
        self.slidingWindow = slidingWindow
        self.windowAttnSkipFreq = windowAttnSkipFreq
        self.yarn = yarn
        self.moe = moe
        if kvChannels == nil && numAttentionHeads > 0 && hiddenSize % numAttentionHeads != 0 {
            throw ConfigError("hidden_size (\(hiddenSize)) must be divisible by num_attention_heads (\(numAttentionHeads)) unless kv_channels is given")
        }
        try validate()
    }

    /// The sliding window of layer `layerNumber` (1-based, Megatron's `is_layer_window_attention`): the window
    /// unless the skip pattern makes it a full-attention layer.
    public func slidingWindow(layerNumber: Int) -> Int? {
        guard let slidingWindow else { return nil }
        return windowAttnSkipFreq?.isWindowed(layerNumber: layerNumber) ?? true ? slidingWindow : nil
    }

    /// The MLP's gated unit when `gatedLinearUnit` is set and its activation has a fused one.
    public var gatedUnit: GatedLinearUnit? {
        guard gatedLinearUnit else { return nil }
        switch activation {
        case .silu: return GatedLinearUnit(gate: .silu, linearOffset: gluLinearOffset, clampValue: activationFuncClampValue)
        case .quickGelu: return GatedLinearUnit(gate: .quickGelu, linearOffset: gluLinearOffset, clampValue: activationFuncClampValue)
        default: return nil
        }
    }

    /// The init of every weight matrix but the output projections and the embeddings (`linear_qkv`,
    /// `linear_fc1`, the untied `output_layer`).
    public var initMethod: InitMethod { initMethodXavierUniform ? .xavierUniform : .normal(std: initMethodStd) }

    /// The init of the output projections (`linear_proj`, `linear_fc2`): the std scaled by 1/sqrt(2 * num_layers),
    /// Megatron's `scaled_init_method_normal`; xavier uniform as every other matrix with that flag.
    public var outputLayerInitMethod: InitMethod {
        initMethodXavierUniform ? .xavierUniform : .normal(std: initMethodStd / (2 * Float(numLayers)).squareRoot())
    }

    /// The init of the word and position embeddings: `initMethod`, unless `embeddingInitMethodStd` asks for
    /// another std (Megatron's rule: an embedding std equal to `initMethodStd` keeps `initMethod`).
    public var embeddingInitMethod: InitMethod {
        let std = embeddingInitMethodStd ?? initMethodStd
        return std == initMethodStd ? initMethod : .normal(std: std)
    }

    func validate() throws {
        func require(_ ok: Bool, _ message: String) throws {
            if !ok { throw ConfigError(message) }
        }
        try require(numLayers > 0, "num_layers must be positive, got \(numLayers)")
        try require(hiddenSize > 0, "hidden_size must be positive, got \(hiddenSize)")
        try require(numAttentionHeads > 0, "num_attention_heads must be positive, got \(numAttentionHeads)")
        try require(kvChannels > 0, "kv_channels must be positive; hidden_size \(hiddenSize) / heads \(numAttentionHeads) gives \(kvChannels)")
        try require(numQueryGroups > 0 && numAttentionHeads % numQueryGroups == 0,
                    "num_attention_heads (\(numAttentionHeads)) must be a multiple of num_query_groups (\(numQueryGroups))")
        try require(ffnHiddenSize > 0, "ffn_hidden_size must be positive, got \(ffnHiddenSize)")
        try require((0..<1).contains(hiddenDropout) && (0..<1).contains(attentionDropout),
                    "dropout probabilities must lie in [0, 1)")
        try require(rotaryPercent > 0 && rotaryPercent <= 1, "rotary_percent must lie in (0, 1], got \(rotaryPercent)")
        let rotaryDim = Int(Float(kvChannels) * rotaryPercent)
        try require(positionEmbeddingType != .rope || (rotaryDim > 0 && rotaryDim % 2 == 0),
                    "rotary dimension \(rotaryDim) (kv_channels \(kvChannels) x rotary_percent \(rotaryPercent)) must be even and positive")
        if let ropeScaling {
            try require(positionEmbeddingType == .rope, "rope scaling needs position_embedding_type rope")
            try ropeScaling.validate()
        }
        try gatedDeltaNet?.validate(numLayers: numLayers)
        if let slidingWindow { try require(slidingWindow >= 0, "window_size must be >= 0, got \(slidingWindow)") }
        try windowAttnSkipFreq?.validate(numLayers: numLayers)
        if let yarn {
            try require(positionEmbeddingType == .rope && ropeScaling == nil, "YaRN replaces RoPE's frequencies: it needs rope positions and no other rope scaling")
            try require(kvChannels % 2 == 0, "YaRN rotates every channel: kv_channels (\(kvChannels)) must be even")
            try yarn.validate()
        }
        try require(softmaxType != .learnable || !initMethodXavierUniform,
                    "softmax_type learnable: its 1-D softmax_offset has no fans for xavier uniform init (as in Megatron)")
        try require(activationFuncClampValue.map { $0 > 0 } ?? true, "activation_func_clamp_value must be positive")
        try require(activation != .quickGelu || gatedLinearUnit, "quick_gelu is used gated only (quick GeGLU)")
        try require(gatedDeltaNet == nil || activation != .quickGelu,
                    "Gated DeltaNet layers take their gate activation from the MLP's; quick GeGLU (--quick-geglu) is not supported with them")
        try moe?.validate(numLayers: numLayers)
        try require(moe == nil || !addBiasLinear, "MoE experts without biases only: pass --disable-bias-linear")
    }

    /// Whether layer `index` (0-based) has a mixture-of-experts MLP.
    public func isMoELayer(_ index: Int) -> Bool { moe?.layers[index] ?? false }

    /// Whether layer `index` is a Gated DeltaNet layer rather than attention.
    public func isGatedDeltaNetLayer(_ index: Int) -> Bool { gatedDeltaNet?.layers[index] ?? false }
}

/// An invalid model or training configuration, with the reason.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension TransformerConfig {
    enum CodingKeys: String, CodingKey {
        case numLayers, hiddenSize, numAttentionHeads, numQueryGroups, kvChannels, ffnHiddenSize, normalization
        case layernormEpsilon, gatedLinearUnit, activation, addBiasLinear, addQKVBias, qkLayernorm, hiddenDropout
        case attentionDropout, positionEmbeddingType, rotaryBase, rotaryPercent, initMethodStd, paramsDType
        case ropeScaling, layernormZeroCenteredGamma, embeddingInitMethodStd, initMethodXavierUniform
        case attentionOutputGate, gatedDeltaNet
        case gluLinearOffset, activationFuncClampValue, softmaxType, slidingWindow, windowAttnSkipFreq, yarn
        case moe
    }

    /// Decodes a config as encoded; the fields added after checkpoints first recorded it (RoPE scaling,
    /// zero-centered norms, the init variants, the output gate, Gated DeltaNet) take their defaults when absent, so those checkpoints still load.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        numLayers = try c.decode(Int.self, forKey: .numLayers)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numQueryGroups = try c.decode(Int.self, forKey: .numQueryGroups)
        kvChannels = try c.decode(Int.self, forKey: .kvChannels)
        ffnHiddenSize = try c.decode(Int.self, forKey: .ffnHiddenSize)
        normalization = try c.decode(Normalization.self, forKey: .normalization)
        layernormEpsilon = try c.decode(Float.self, forKey: .layernormEpsilon)
        gatedLinearUnit = try c.decode(Bool.self, forKey: .gatedLinearUnit)
        activation = try c.decode(Activation.self, forKey: .activation)
        addBiasLinear = try c.decode(Bool.self, forKey: .addBiasLinear)
        addQKVBias = try c.decode(Bool.self, forKey: .addQKVBias)
        qkLayernorm = try c.decode(Bool.self, forKey: .qkLayernorm)
        hiddenDropout = try c.decode(Float.self, forKey: .hiddenDropout)
        attentionDropout = try c.decode(Float.self, forKey: .attentionDropout)
        positionEmbeddingType = try c.decode(PositionEmbedding.self, forKey: .positionEmbeddingType)
        rotaryBase = try c.decode(Float.self, forKey: .rotaryBase)
        rotaryPercent = try c.decode(Float.self, forKey: .rotaryPercent)
        initMethodStd = try c.decode(Float.self, forKey: .initMethodStd)
        paramsDType = try c.decode(DType.self, forKey: .paramsDType)
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
        layernormZeroCenteredGamma = try c.decodeIfPresent(Bool.self, forKey: .layernormZeroCenteredGamma) ?? false
        embeddingInitMethodStd = try c.decodeIfPresent(Float.self, forKey: .embeddingInitMethodStd)
        initMethodXavierUniform = try c.decodeIfPresent(Bool.self, forKey: .initMethodXavierUniform) ?? false
        attentionOutputGate = try c.decodeIfPresent(Bool.self, forKey: .attentionOutputGate) ?? false
        gatedDeltaNet = try c.decodeIfPresent(GatedDeltaNetConfig.self, forKey: .gatedDeltaNet)
        gluLinearOffset = try c.decodeIfPresent(Float.self, forKey: .gluLinearOffset) ?? 0
        activationFuncClampValue = try c.decodeIfPresent(Float.self, forKey: .activationFuncClampValue)
        softmaxType = try c.decodeIfPresent(SoftmaxType.self, forKey: .softmaxType) ?? .vanilla
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow)
        windowAttnSkipFreq = try c.decodeIfPresent(LayerPattern.self, forKey: .windowAttnSkipFreq)
        yarn = try c.decodeIfPresent(YarnScaling.self, forKey: .yarn)
        moe = try c.decodeIfPresent(MoEConfig.self, forKey: .moe)
    }
}

/// Which layers a per-layer feature applies to, as Megatron writes it (`--window-attn-skip-freq`): every
/// layer but each `n`-th (`frequency(n)`: (n-1) windowed layers, then one full), or a list with one entry per
/// layer, 1 where it applies.
public enum LayerPattern: Sendable, Equatable, Codable {
    case frequency(Int)
    case list([Int])

    /// Whether layer `layerNumber` (1-based) is windowed.
    public func isWindowed(layerNumber: Int) -> Bool {
        switch self {
        case .frequency(let n): layerNumber % n != 0
        case .list(let flags): flags[layerNumber - 1] != 0
        }
    }

    func validate(numLayers: Int) throws {
        switch self {
        case .frequency(let n):
            guard n > 0 else { throw ConfigError("window_attn_skip_freq must be positive, got \(n)") }
        case .list(let flags):
            guard flags.count == numLayers else {
                throw ConfigError("window_attn_skip_freq lists \(flags.count) layers; the model has num_layers \(numLayers)")
            }
        }
    }
}
