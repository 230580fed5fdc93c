import MegatronTensor

/// Keys and values of the tokens a model has already seen, per layer, so each new token costs one
/// position's work instead of re-running the whole sequence (inference only).
///
/// ```swift
/// let cache = KVCache(layers: model.config.numLayers)
/// var logits = model(promptTokens, cache: cache)         // fills the cache
/// logits = model(nextToken, cache: cache)                // one step
/// ```
public final class KVCache {
    /// One layer's cached keys and values `[batch, groups, 1, positions, kvChannels]`.
    public final class Layer {
        var keys: Tensor?
        var values: Tensor?

        /// Positions cached so far.
        public var length: Int { keys?.size(3) ?? 0 }

        /// Appends this step's keys and values and returns all of them.
        func append(keys k: Tensor, values v: Tensor) -> (Tensor, Tensor) {
            keys = keys.map { Ops.concat([$0, k.detached()], dim: 3) } ?? k.detached().contiguous()
            values = values.map { Ops.concat([$0, v.detached()], dim: 3) } ?? v.detached().contiguous()
            return (keys!, values!)
        }
    }

    public let layers: [Layer]

    public init(layers count: Int) { layers = (0..<count).map { _ in Layer() } }

    /// Positions cached so far (the same in every layer).
    public var length: Int { layers.first?.length ?? 0 }
}
