/// A matrix quantized for FP8 GEMMs: its codes as they are (`rowwise`) and, where a GEMM reads it transposed, a
/// transposed copy with the same scale. Hopper's FP8 GEMMs take both operands with the reduced dimension innermost,
/// so the backward products read transposes: the weight's for dgrad, the input's and output gradient's for wgrad.
public struct FP8Operand {
    public let rowwise: FP8Tensor
    /// `rowwise.transposedCopy()`, when it was asked for.
    public let transposed: FP8Tensor?

    public init(rowwise: FP8Tensor, transposed: FP8Tensor?) {
        (self.rowwise, self.transposed) = (rowwise, transposed)
    }
}

extension Ops {
    /// `x` quantized as `FP8Tensor.quantize(x, to: format, scale: scale, scaleInverse: scaleInverse)` (saturating),
    /// with its transposed copy when `transposed` (x then a matrix), and max |x| (`absMax`, rank 0) when `recordAmax`.
    /// On CUDA one pass over x does all three (fp8.cu's `cast_transpose`); elsewhere, and for inputs that kernel does
    /// not take, the ops run one after another. The codes and the amax are the same bits either way.
    ///
    /// ```swift
    /// let (w8, _) = Ops.fp8Quantize(w, to: .float8E4M3, scale: s, scaleInverse: sInv, transposed: true, recordAmax: false)
    /// let dx = Ops.fp8Matmul(dy8.rowwise, w8.transposed!, outputType: .bfloat16)   // dY · W
    /// ```
    public static func fp8Quantize(_ x: Tensor, to format: DType, scale: Tensor, scaleInverse: Tensor, transposed: Bool,
                                   recordAmax: Bool) -> (operand: FP8Operand, amax: Tensor?) {
        precondition(!transposed || x.rank == 2, "fp8Quantize transposes matrices, got shape \(x.shape)")
        if let device = cudaDevice(x, scale, op: "fp8Quantize", allowingCPUScalars: true),
           let fused = CUDAFusedOps.fp8QuantizeTransposing(x, to: format, scale: scale.to(device), scaleInverse: scaleInverse,
                                                           transposed: transposed, recordAmax: recordAmax) {
            return fused
        }
        let amax = recordAmax ? absMax(x) : nil
        let rowwise = FP8Tensor.quantize(x, to: format, scale: scale, scaleInverse: scaleInverse)
        return (FP8Operand(rowwise: rowwise, transposed: transposed ? rowwise.transposedCopy() : nil), amax)
    }
}
