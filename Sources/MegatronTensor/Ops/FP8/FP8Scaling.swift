/// The two operations FP8 training with per-tensor scaling needs besides plain casts: a cast that
/// multiplies by a scale first (quantize with `scale`, dequantize with `1 / scale`), and the amax
/// (largest magnitude) that delayed scaling records to choose the next scale.
extension Ops {
    /// `x * scale` computed in fp32, then rounded to nearest even into `dtype`. `scale` is a one-element
    /// float tensor (on x's device, or a CPU scalar), read by the kernel, so a scale computed on the GPU
    /// needs no host sync. With `saturate`, values beyond `dtype`'s largest finite value (infinities too)
    /// become that value with their sign, as Transformer Engine's casts; without it they follow the plain
    /// cast (e4m3: NaN, e5m2: infinity). NaN stays NaN.
    ///
    /// ```swift
    /// let amax = Ops.absMax(x)                                        // delayed scaling keeps a history
    /// let scale = Tensor(scalar: 448 / max(amax.item(), 1e-12))
    /// let q = Ops.scaledCast(x, to: .float8E4M3, scale: scale, saturate: true)
    /// let back = Ops.scaledCast(q, to: .float32, scale: Tensor(scalar: 1 / scale.item()))
    /// ```
    public static func scaledCast(_ x: Tensor, to dtype: DType, scale: Tensor, saturate: Bool = false) -> Tensor {
        precondition(x.dtype.isFloatingPoint && dtype.isFloatingPoint,
                     "scaledCast converts between floating dtypes, got \(x.dtype) to \(dtype)")
        precondition(scale.count == 1 && scale.dtype.isFloatingPoint,
                     "scaledCast wants a one-element float scale, got \(scale.dtype) of shape \(scale.shape)")
        if let device = cudaDevice(x, scale, op: "scaledCast", allowingCPUScalars: true) {
            return CUDAFusedOps.scaledCast(x, to: dtype, scale: scale.to(device), saturate: saturate)
        }
        let factor = scale.item()
        let limit = FloatFormats.largestFinite(dtype)
        return x.withFloats { src in
            Tensor.computed(shape: x.shape, dtype: dtype) { out in
                for i in 0..<out.count {
                    let v = src[i] * factor
                    out[i] = saturate && !v.isNaN ? Swift.min(Swift.max(v, -limit), limit) : v
                }
            }
        }
    }

    /// max |x| over all elements as a rank-0 fp32 tensor on x's device: 0 for an empty tensor, and the
    /// quiet NaN when any element is NaN (a NaN amax must not pass unnoticed into a scale).
    public static func absMax(_ x: Tensor) -> Tensor {
        precondition(x.dtype.isFloatingPoint, "absMax of a \(x.dtype) tensor; it is for floating dtypes")
        if cudaDevice(x, op: "absMax") != nil { return CUDAFusedOps.absMax(x) }
        let largest = x.withFloats { src -> Float in
            var largest: Float = 0
            for v in src {
                if v.isNaN { return .nan }
                largest = Swift.max(largest, Swift.abs(v))
            }
            return largest
        }
        return Tensor(scalar: largest)
    }
}
