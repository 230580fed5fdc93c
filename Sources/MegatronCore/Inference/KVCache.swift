import MegatronTensor

/// Keys and values of the tokens a model has already seen, per layer, so each new token costs one
/// position's work instead of re-running the whole sequence (inference only).
///
/// ```swift
/// let cache = KVCache(layers: model.config.numLayers)
/// var logits = model(promptTokens, cache: cache)         // fills the cache
/// logits = model(nextToken, cache: cache)                // one step
/// ```
///
/// For a batch of prompts of different lengths, pass their `LeftPadding`: rows are left-padded to one
/// width, and positions and attention masks follow each row's own tokens.
public final class KVCache {
    /// One layer's cached keys and values `[batch, groups, 1, positions, kvChannels]`.
    public final class Layer {
        var keys: Tensor?
        var values: Tensor?
        /// Pad columns at the start of each batch row; nil when the rows are not padded.
        public private(set) var padding: LeftPadding?

        init(padding: LeftPadding?) { self.padding = padding }

        /// Positions cached so far.
        public var length: Int { keys?.size(3) ?? 0 }

        /// Appends this step's keys and values and returns all of them.
        func append(keys k: Tensor, values v: Tensor) -> (Tensor, Tensor) {
            keys = keys.map { Ops.concat([$0, k.detached()], dim: 3) } ?? k.detached().madeContiguous()
            values = values.map { Ops.concat([$0, v.detached()], dim: 3) } ?? v.detached().madeContiguous()
            return (keys!, values!)
        }

        /// Keeps only the batch rows `kept` (in that order).
        func retainRows(_ kept: [Int], padding newPadding: LeftPadding?) {
            keys = keys.map { KVCache.rows(kept, of: $0) }
            values = values.map { KVCache.rows(kept, of: $0) }
            padding = newPadding
        }
    }

    public let layers: [Layer]
    /// Pad columns at the start of each batch row; nil when the rows are not padded.
    public private(set) var padding: LeftPadding?

    public init(layers count: Int, padding: LeftPadding? = nil) {
        self.padding = padding
        layers = (0..<count).map { _ in Layer(padding: padding) }
    }

    /// Positions cached so far (the same in every layer).
    public var length: Int { layers.first?.length ?? 0 }

    /// Keeps only the batch rows `kept` (in that order), so that rows done decoding stop costing work.
    public func retainRows(_ kept: [Int]) {
        padding = padding.map { old in LeftPadding(counts: kept.map { old.counts[$0] }) }
        for layer in layers { layer.retainRows(kept, padding: padding) }
    }

    static func rows(_ kept: [Int], of x: Tensor) -> Tensor {
        Ops.concat(kept.map { x.narrowed(0, start: $0, length: 1) }, dim: 0)
    }
}
