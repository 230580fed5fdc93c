extension Ops {
    /// `a · bᵀ` of two fp8 matrices with the reduced dimension innermost, `a [M, K]` and `b [N, K]`: the product
    /// of the dequantized operands, (a.data · a.scaleInverse)(b.data · b.scaleInverse)ᵀ, accumulated in fp32 and
    /// rounded into `outputType`. This "TN" form is the one FP8 GEMMs take on Hopper; the backward's products
    /// pass transposed copies (`FP8Tensor.transposedCopy`). On the CPU the operands are dequantized and
    /// multiplied in fp32 (the reference); on CUDA one cuBLASLt FP8 GEMM reads the scale inverses on the device
    /// (shapes its kernels cannot take, K not a multiple of 16 or N of 8, run as the reference there too).
    /// `fastAccumulation` lets that GEMM keep partial sums in the tensor cores' narrower accumulators between fp32
    /// promotions, faster and less exact: Transformer Engine's choice for forward GEMMs, not dgrad / wgrad. The CPU
    /// reference accumulates in fp32 either way.
    ///
    /// ```swift
    /// let y = Ops.fp8Matmul(FP8Tensor.quantize(x, to: .float8E4M3, scale: sx),
    ///                       FP8Tensor.quantize(w, to: .float8E4M3, scale: sw), outputType: .bfloat16)   // x · wᵀ
    /// ```
    public static func fp8Matmul(_ a: FP8Tensor, _ b: FP8Tensor, outputType: DType, fastAccumulation: Bool = false) -> Tensor {
        precondition(a.data.rank == 2 && b.data.rank == 2 && a.shape[1] == b.shape[1],
                     "fp8Matmul takes a [M, K] and b [N, K], got \(a.shape) and \(b.shape)")
        // cuBLASLt's FP8 kernels want 16-byte rows (K % 16, N % 8); other shapes take the reference's route.
        if let device = cudaDevice(a.data, b.data, op: "fp8Matmul"), a.shape[1] % 16 == 0, b.shape[0] % 8 == 0 {
            return CUDAFP8Matmul.product(a, b, outputType: outputType, fastAccumulation: fastAccumulation, on: device)
        }
        return matmul(a.dequantized(), b.dequantized().transposed(0, 1)).cast(to: outputType)
    }
}
