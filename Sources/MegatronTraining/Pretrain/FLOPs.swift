import MegatronCore

/// Megatron's model FLOPs per training iteration (`num_floating_point_operations`, GPT branch):
/// forward plus backward (x3), multiply-adds counted as two (x2), causal attention at half the square; an MoE
/// layer's MLP counts the experts each token is routed to (top-k) and the shared expert, as Megatron does, so
/// MoE TFLOP/s are on the active parameters.
public func trainingFLOPs(config: TransformerConfig, vocabSize: Int, sequenceLength: Int, batchSize: Int) -> Double {
    let (h, L) = (Double(config.hiddenSize), Double(config.numLayers))
    let s = Double(sequenceLength), b = Double(batchSize)
    let q = Double(config.kvChannels * config.numAttentionHeads)
    let kv = Double(config.kvChannels * config.numQueryGroups)
    // The MLP widths of all layers together.
    let mlpWidths = (0..<config.numLayers).map { i -> Double in
        guard let moe = config.moe, config.isMoELayer(i) else { return Double(config.ffnHiddenSize) }
        return Double(moe.ffnHiddenSize * moe.topk + (moe.sharedExpertIntermediateSize ?? 0))
    }.reduce(0, +)
    let tokens = b * s
    let perToken = h * mlpWidths * (config.gatedLinearUnit ? 3 : 2) + L * (h * (q + 2 * kv) + q * h) + h * Double(vocabSize)
    return tokens * 6 * perToken + b * s * s * 6 * q * L
}
