import MegatronTensor

/// What fills a transformer layer's `self_attention` slot: softmax attention (`SelfAttention`) or, in a hybrid
/// model's linear-attention layers, Gated DeltaNet (`GatedDeltaNet`).
public protocol SequenceMixer: Module {
    /// `x [batch, seq, hidden] -> [batch, seq, hidden]`; `cache` continues a cached sequence (attention only).
    func callAsFunction(_ x: Tensor, cache: KVCache.Layer?) -> Tensor
    /// Recomputes in backward the parts of `modules` this mixer has, instead of keeping their activations.
    func recompute(_ modules: Set<RecomputedModule>)
}

extension SequenceMixer {
    /// The mixer on a whole sequence, without a cache.
    public func callAsFunction(_ x: Tensor) -> Tensor { self(x, cache: nil) }
}

extension SelfAttention: SequenceMixer {
    public func recompute(_ modules: Set<RecomputedModule>) { recomputeCoreAttention = modules.contains(.coreAttention) }
}
