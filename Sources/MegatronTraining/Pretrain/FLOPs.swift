import MegatronCore

/// Megatron's model FLOPs per training iteration (`num_floating_point_operations`, dense GPT branch):
/// forward plus backward (x3), multiply-adds counted as two (x2), causal attention at half the square.
public func trainingFLOPs(config: TransformerConfig, vocabSize: Int, sequenceLength: Int, batchSize: Int) -> Double {
    let (h, L) = (Double(config.hiddenSize), Double(config.numLayers))
    let s = Double(sequenceLength), b = Double(batchSize)
    let q = Double(config.kvChannels * config.numAttentionHeads)
    let kv = Double(config.kvChannels * config.numQueryGroups)
    let ffn = Double(config.ffnHiddenSize) * (config.gatedLinearUnit ? 3 : 2)
    let tokens = b * s
    let perToken = h * ffn * L + L * (h * (q + 2 * kv) + q * h) + h * Double(vocabSize)
    return tokens * 6 * perToken + b * s * s * 6 * q * L
}
