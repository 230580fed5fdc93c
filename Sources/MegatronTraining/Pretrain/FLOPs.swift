import MegatronCore

/// Megatron's model FLOPs per training iteration (`num_floating_point_operations`, GPT branch):
/// forward plus backward (x3), multiply-adds counted as two (x2), causal attention at half the square.
/// An MoE layer counts the experts each token is routed to and the shared expert (its active parameters),
/// not the router, as Megatron does.
public func trainingFLOPs(config: TransformerConfig, vocabSize: Int, sequenceLength: Int, batchSize: Int) -> Double {
    let (h, L) = (Double(config.hiddenSize), Double(config.numLayers))
    let s = Double(sequenceLength), b = Double(batchSize)
    let q = Double(config.kvChannels * config.numAttentionHeads)
    let kv = Double(config.kvChannels * config.numQueryGroups)
    let tokens = b * s
    let perToken = h * mlpWidthOverLayers(config) + L * (h * (q + 2 * kv) + q * h) + h * Double(vocabSize)
    return tokens * 6 * perToken + b * s * s * 6 * q * L
}

/// Σ over layers of the MLP's active width times its GEMMs per unit (3 with a gated unit, else 2): the dense
/// `ffn_hidden_size`, or for an MoE layer `topk` experts of `moe_ffn_hidden_size` plus the shared expert.
private func mlpWidthOverLayers(_ config: TransformerConfig) -> Double {
    let gemms = config.gatedLinearUnit ? 3.0 : 2.0
    let dense = Double(config.ffnHiddenSize) * gemms
    guard let moe = config.moe else { return dense * Double(config.numLayers) }
    let routed = Double(moe.topk * moe.ffnHiddenSize + (moe.sharedExpertIntermediateSize ?? 0)) * gemms
    let moeLayers = Double(moe.layers.filter { $0 }.count)
    return routed * moeLayers + dense * (Double(config.numLayers) - moeLayers)
}
