/// What an FP8 linear layer's GEMMs quantize with: the recipe (formats, delayed or current scaling) and its
/// per-tensor scaling state live behind it, one per layer, as Transformer Engine's `fp8_meta`.
public protocol FP8LinearQuantizer: AnyObject {
    /// The layer input for the forward GEMM (e4m3).
    func quantizeInput(_ x: Tensor) -> FP8Tensor
    /// The weight for the forward GEMM (e4m3).
    func quantizeWeight(_ weight: Tensor) -> FP8Tensor
    /// The output gradient for the dgrad and wgrad GEMMs (e5m2 under the hybrid format, e4m3 under e4m3).
    func quantizeGradOutput(_ gradOutput: Tensor) -> FP8Tensor
    /// Whether the weight gradient runs in FP8 too (`--no-fp8-wgrad` turns it off: it then runs in the
    /// layer's precision from the dequantized input).
    var fp8WeightGradient: Bool { get }
}
