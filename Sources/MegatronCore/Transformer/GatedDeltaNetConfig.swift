/// The Gated DeltaNet layers of a hybrid model (Megatron's `--experimental-attention-variant gated_delta_net`
/// with the `--linear-*` flags): which layers are Gated DeltaNet ("linear attention") rather than full
/// attention, and their sizes.
///
/// ```swift
/// let gdn = GatedDeltaNetConfig(layers: GatedDeltaNetConfig.pattern(frequency: 4, numLayers: 8))
/// // layers: [true, true, true, false, true, true, true, false]
/// ```
public struct GatedDeltaNetConfig: Sendable, Equatable, Codable {
    /// Per layer: true for a Gated DeltaNet layer, false for a full attention layer.
    public var layers: [Bool]
    /// Width of the causal depthwise convolution over q, k and v (`--linear-conv-kernel-dim`).
    public var convKernelDim: Int
    public var keyHeadDim: Int
    public var valueHeadDim: Int
    /// Query and key heads; each serves `numValueHeads / numKeyHeads` value heads.
    public var numKeyHeads: Int
    public var numValueHeads: Int

    /// Megatron's defaults for the sizes.
    public init(layers: [Bool], convKernelDim: Int = 4, keyHeadDim: Int = 128, valueHeadDim: Int = 128,
                numKeyHeads: Int = 16, numValueHeads: Int = 32) {
        (self.layers, self.convKernelDim, self.keyHeadDim, self.valueHeadDim, self.numKeyHeads, self.numValueHeads) =
            (layers, convKernelDim, keyHeadDim, valueHeadDim, numKeyHeads, numValueHeads)
    }

    /// Megatron's integer `--linear-attention-freq N`: every N-th layer (the N-th, 2N-th, ...) is full
    /// attention, the others Gated DeltaNet.
    public static func pattern(frequency: Int, numLayers: Int) -> [Bool] {
        (0..<numLayers).map { ($0 + 1) % frequency != 0 }
    }

    /// Query and key channels of all heads (`qk_dim`), value channels (`v_dim`).
    public var keyDim: Int { keyHeadDim * numKeyHeads }
    public var valueDim: Int { valueHeadDim * numValueHeads }

    func validate(numLayers: Int) throws {
        func require(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try require(layers.count == numLayers,
                    "the linear attention pattern has \(layers.count) layers, but the model has num_layers \(numLayers)")
        try require([convKernelDim, keyHeadDim, valueHeadDim, numKeyHeads, numValueHeads].allSatisfy { $0 > 0 },
                    "linear_conv_kernel_dim, linear_key_head_dim, linear_value_head_dim, linear_num_key_heads and "
                        + "linear_num_value_heads must be positive")
        try require(numValueHeads % numKeyHeads == 0,
                    "linear_num_value_heads (\(numValueHeads)) must be a multiple of linear_num_key_heads (\(numKeyHeads))")
    }
}
