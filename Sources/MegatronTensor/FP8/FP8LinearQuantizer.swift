/// What an FP8 linear layer's GEMMs quantize with: the recipe (formats, delayed or current scaling) and its
/// per-tensor scaling state live behind it, one per layer, as Transformer Engine's `fp8_meta`. Each matrix comes
/// with its transposed copy when `transposed` (a backward GEMM reads it so), made in the same pass on CUDA.
public protocol FP8LinearQuantizer: AnyObject {
    /// The layer input for the forward GEMM (e4m3); its transpose feeds wgrad.
    func quantizeInput(_ x: Tensor, transposed: Bool) -> FP8Operand
    /// The weight for the forward GEMM (e4m3); its transpose feeds dgrad.
    func quantizeWeight(_ weight: Tensor, transposed: Bool) -> FP8Operand
    /// The output gradient for dgrad and, transposed, wgrad (e5m2 under the hybrid format, e4m3 under e4m3).
    func quantizeGradOutput(_ gradOutput: Tensor, transposed: Bool) -> FP8Operand
    /// Whether the weight gradient runs in FP8 too (`--no-fp8-wgrad` turns it off: it then runs in the
    /// layer's precision from the dequantized input).
    var fp8WeightGradient: Bool { get }
}
