/// One training sample of a GPTDataset, as Megatron's `GPTDataset.__getitem__` returns it.
public struct GPTSample: Equatable, Sendable {
    public var tokens: [Int32]
    public var labels: [Int32]
    public var lossMask: [Float]
    public var positionIDs: [Int32]
    /// Token positions after which attention restarts (`--reset-attention-mask`: each EOD in `tokens`).
    public var attentionResets: [Int]
    /// Whether Megatron would attach an attention mask (`create_attention_mask`).
    public var hasAttentionMask: Bool

    /// Megatron's `attention_mask` as a row-major `S×S` array, `true` = masked: causal, and, with resets,
    /// no attention from after an EOD to at or before it.
    public func attentionMask() -> [Bool] {
        let s = tokens.count
        var mask = [Bool](repeating: false, count: s * s)
        for row in 0..<s {
            for column in (row + 1)..<max(row + 1, s) { mask[row * s + column] = true }
        }
        for eod in attentionResets where eod + 1 < s {
            for row in (eod + 1)..<s {
                for column in 0...eod { mask[row * s + column] = true }
            }
        }
        return mask
    }

    /// Builds tokens/labels/masks from `S + add` raw tokens (Megatron's `__getitem__` and
    /// `_get_ltor_masks_and_position_ids`).
    static func make(text: [Int32], config: GPTDatasetConfig, padID: Int, isPaddingSample: Bool) -> GPTSample {
        let eod = Int32(truncatingIfNeeded: config.tokenizer.eod)
        let pad = Int32(truncatingIfNeeded: padID)
        var tokens: [Int32], labels: [Int32]
        if config.addExtraTokenToSequence {
            tokens = Array(text.dropLast())
            labels = Array(text.dropFirst())
        } else {
            tokens = text
            labels = Array(text.dropFirst()) + [pad]
        }
        let s = tokens.count
        var lossMask = [Float](repeating: 1, count: s)
        var positions = (0..<s).map { Int32($0) }
        let eods = tokens.indices.filter { tokens[$0] == eod }
        if config.eodMaskLoss { for i in eods { lossMask[i] = 0 } }
        if config.resetPositionIDs {
            var previous = 0
            for i in eods {
                for p in (i + 1)..<max(i + 1, s) { positions[p] -= Int32(i + 1 - previous) }
                previous = i + 1
            }
        }
        for i in 0..<s where labels[i] == pad { lossMask[i] = 0 }
        for i in 0..<s {
            if tokens[i] == pad { tokens[i] = 0 }
            if labels[i] == pad { labels[i] = 0 }
        }
        if isPaddingSample { lossMask = [Float](repeating: 0, count: s) }
        return GPTSample(tokens: tokens, labels: labels, lossMask: lossMask, positionIDs: positions,
                         attentionResets: config.resetAttentionMask ? eods : [],
                         hasAttentionMask: config.createAttentionMask)
    }
}
