/// A tensor quantized to fp8 with one per-tensor scale, as Transformer Engine's `Float8Tensor`: `data`
/// holds fp8(x · scale) and `scaleInverse` (one fp32 on data's device) undoes it, x ≈ data · scaleInverse.
/// The scale inverse is what an FP8 GEMM multiplies its product by.
///
/// ```swift
/// let scale = Tensor(scalar: 448 / Ops.absMax(x).item())
/// let q = FP8Tensor.quantize(x, to: .float8E4M3, scale: scale)
/// let back = q.dequantized()   // x to within e4m3's rounding
/// ```
public struct FP8Tensor {
    /// fp8 codes (`float8E4M3` or `float8E5M2`), contiguous.
    public let data: Tensor
    /// 1 / scale as a one-element fp32 tensor on data's device.
    public let scaleInverse: Tensor

    public init(data: Tensor, scaleInverse: Tensor) {
        precondition(data.dtype == .float8E4M3 || data.dtype == .float8E5M2, "FP8Tensor holds fp8 data, got \(data.dtype)")
        self.data = data
        self.scaleInverse = scaleInverse
    }

    /// `x` cast to fp8 `format` as fp8(x · scale), saturating at the format's largest finite value as
    /// Transformer Engine's casts do; `scaleInverse` defaults to 1 / scale (rounded to nearest).
    public static func quantize(_ x: Tensor, to format: DType, scale: Tensor, scaleInverse: Tensor? = nil) -> FP8Tensor {
        let inverse = scaleInverse ?? Ops.binary(Tensor(scalar: 1).to(scale.device), scale.cast(to: .float32).reshaped([]), .div)
        return FP8Tensor(data: Ops.scaledCast(x.madeContiguous(), to: format, scale: scale, saturate: true),
                         scaleInverse: inverse.reshaped([1]))
    }

    public var shape: [Int] { data.shape }

    /// data · scaleInverse in `dtype`.
    public func dequantized(to dtype: DType = .float32) -> Tensor {
        Ops.scaledCast(data, to: dtype, scale: scaleInverse)
    }

    /// The transposed matrix (a 2-D tensor), contiguous, with the same scale: the second copy the FP8 GEMMs
    /// of backward read, since FP8 GEMMs take both operands with the reduced dimension innermost.
    public func transposedCopy() -> FP8Tensor {
        precondition(data.rank == 2, "transposedCopy of a rank-\(data.rank) FP8 tensor; it is for matrices")
        return FP8Tensor(data: data.transposed(0, 1).madeContiguous(), scaleInverse: scaleInverse)
    }
}
