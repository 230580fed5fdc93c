/// A submodule of every transformer layer whose activations `--recompute-granularity selective` drops in
/// forward and recomputes in backward (Megatron's `recompute_modules`, named as there).
///
/// ```swift
/// model.decoder.recomputedModules = [.coreAttention, .mlp]
/// ```
public enum RecomputedModule: String, Sendable, CaseIterable {
    /// Scores, softmax, attention dropout and the product with v: the materialized path then keeps no
    /// [s, s] tensors (the fused kernels keep none anyway, so there it only costs a second forward).
    case coreAttention = "core_attn"
    /// The dense MLP, which then keeps only its input.
    case mlp
    /// Gated DeltaNet's output norm and gate, which then keep only their inputs.
    case gdnNormOut = "gdn_norm_out"
}
