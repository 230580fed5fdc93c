import MegatronTensor

/// How a model trains in FP8, as Megatron's `--fp8-*` flags choose Transformer Engine's recipe: which GEMMs
/// (the transformer layers' QKV, projection, FC1 and FC2; not the embeddings, the output layer or attention's
/// own products), in which formats, and how their per-tensor scales are chosen.
///
/// ```swift
/// var recipe = FP8Recipe(format: .hybrid)            // --fp8-format hybrid
/// recipe.scaling = .tensorwise                       // --fp8-recipe tensorwise
/// model.enableFP8(recipe, amaxGroup: parallel.tensorWithDataAndContext)
/// ```
public struct FP8Recipe: Equatable, Sendable, Codable {
    /// `--fp8-format`.
    public enum Format: String, Sendable, Codable, CaseIterable {
        /// E4M3 for activations, weights and gradients.
        case e4m3
        /// E4M3 forward, E5M2 for gradients (their wider range, less precision).
        case hybrid
    }

    /// `--fp8-recipe`: where each tensor's scale comes from.
    public enum Scaling: String, Sendable, Codable, CaseIterable {
        /// From the amax history of earlier steps (Transformer Engine's `DelayedScaling`).
        case delayed
        /// From the tensor's own amax, just before the cast (`Float8CurrentScaling`).
        case tensorwise
    }

    /// `--fp8-amax-compute-algo`'s choices.
    public typealias AmaxComputeAlgo = FP8AmaxComputeAlgo

    public var format: Format
    public var scaling: Scaling = .delayed
    /// `--fp8-margin`: delayed scales are divided by 2^margin.
    public var margin: Int = 0
    /// `--fp8-amax-history-len`: steps of amax a delayed scale looks back on.
    public var amaxHistoryLength: Int = 1
    /// `--fp8-amax-compute-algo`.
    public var amaxComputeAlgo: FP8AmaxComputeAlgo = .mostRecent
    /// Off with `--no-fp8-wgrad`: weight gradients then run in the layers' own precision.
    public var fp8WeightGradient = true
    /// `--first-last-layers-bf16`: how many layers at the start and at the end of the whole model keep their
    /// GEMMs out of FP8 (`--num-layers-at-start-in-bf16` / `--num-layers-at-end-in-bf16`); 0 without the flag.
    public var highPrecisionLayersAtStart = 0, highPrecisionLayersAtEnd = 0

    public init(format: Format) { self.format = format }

    /// The fp8 dtype of activations and weights.
    public var forwardDType: DType { .float8E4M3 }
    /// The fp8 dtype of output gradients.
    public var gradientDType: DType { format == .hybrid ? .float8E5M2 : .float8E4M3 }

    /// Whether layer `index` (0-based, over the whole model) runs its GEMMs in FP8.
    public func runsInFP8(layer index: Int, of numLayers: Int) -> Bool {
        index >= highPrecisionLayersAtStart && index < numLayers - highPrecisionLayersAtEnd
    }
}
