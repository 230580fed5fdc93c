import MegatronCUDA

/// FP8 casts and amax on CUDA tensors through CUDAKernels' fp8.cu: contiguous, vectorized, with the
/// per-tensor scale read on the device. Pairs those kernels lack (fp8 to fp8, a saturating cast to a
/// wide type) compose the generic ops, with the same fp32 arithmetic and hence the same bits.
extension CUDAFusedOps {
    static func scaledCast(_ x: Tensor, to dtype: DType, scale: Tensor, saturate: Bool) -> Tensor {
        let factor = scale.cast(to: .float32).madeContiguous()
        if let out = fp8Cast(x.madeContiguous(), to: dtype, scale: factor, saturate: saturate) { return out }
        var scaled = Ops.binary(x.cast(to: .float32), factor.reshaped([]), .mul)
        if saturate {
            let limit = FloatFormats.largestFinite(dtype)
            scaled = Ops.binary(Ops.binary(scaled, Tensor(scalar: -limit), .maximum), Tensor(scalar: limit), .minimum)
        }
        return scaled.cast(to: dtype)
    }

    /// A contiguous `x` quantized to, or dequantized from, fp8 by one kernel; nil where fp8.cu has no
    /// kernel for the pair. `scale` (one fp32 on the device) may be nil: no scaling, a plain cast.
    static func fp8Cast(_ x: Tensor, to dtype: DType, scale: Tensor?, saturate: Bool = false) -> Tensor? {
        precondition(x.isContiguous, "fp8Cast takes a contiguous tensor")
        let scaleAddress = scale?.deviceAddress ?? 0
        if let format = dtype.fp8Format, let type = x.dtype.kernelElementType {
            let out = Tensor.empty(x.shape, dtype: dtype, device: x.device)
            run("cast to \(dtype)", on: x.device) { nn, stream in
                try nn.quantize(out.deviceAddress, format: format, input: x.deviceAddress, from: type, count: x.count,
                                scale: scaleAddress, saturate: saturate, stream: stream)
            }
            return out
        }
        if let format = x.dtype.fp8Format, let type = dtype.kernelElementType, !saturate {
            let out = Tensor.empty(x.shape, dtype: dtype, device: x.device)
            run("cast from \(x.dtype)", on: x.device) { nn, stream in
                try nn.dequantize(out.deviceAddress, to: type, input: x.deviceAddress, format: format, count: x.count,
                                  scale: scaleAddress, stream: stream)
            }
            return out
        }
        return nil
    }

    /// `Ops.fp8Quantize` by one `cast_transpose` kernel: x viewed as [count / last dim, last dim] (a matrix when
    /// `transposed`); nil where that kernel does not take x's dtype or `format`.
    static func fp8QuantizeTransposing(_ x: Tensor, to format: DType, scale: Tensor, scaleInverse: Tensor, transposed: Bool,
                                       recordAmax: Bool) -> (operand: FP8Operand, amax: Tensor?)? {
        guard let fp8 = format.fp8Format, let type = x.dtype.kernelElementType else { return nil }
        let input = x.madeContiguous(), factor = scale.cast(to: .float32).madeContiguous()
        let columns = x.rank == 0 ? 1 : x.shape[x.rank - 1]
        let rows = columns == 0 ? 0 : x.count / columns
        let out = Tensor.empty(x.shape, dtype: format, device: x.device)
        let outT = transposed ? Tensor.empty([columns, rows], dtype: format, device: x.device) : nil
        let amax = recordAmax ? Tensor.empty([], dtype: .float32, device: x.device) : nil
        run("cast to \(format)\(transposed ? " and transpose" : "")", on: x.device) { nn, stream in
            try nn.quantizeTransposing(out.deviceAddress, transposed: outT?.deviceAddress ?? 0, format: fp8, input: input.deviceAddress,
                                       from: type, rows: rows, columns: columns, scale: factor.deviceAddress,
                                       amax: amax?.deviceAddress ?? 0, saturate: true, stream: stream)
        }
        let inverse = scaleInverse.reshaped([1])
        return (FP8Operand(rowwise: FP8Tensor(data: out, scaleInverse: inverse),
                           transposed: outT.map { FP8Tensor(data: $0, scaleInverse: inverse) }), amax)
    }

    /// max |x| as a rank-0 fp32 tensor on x's device (NaN if any element is NaN).
    static func absMax(_ x: Tensor) -> Tensor {
        let input = x.dtype.kernelElementType == nil ? x.cast(to: .float32) : x.madeContiguous()
        let out = Tensor.empty([], dtype: .float32, device: x.device)
        run("absMax", on: x.device) { nn, stream in
            try nn.absMax(out.deviceAddress, input: input.deviceAddress, type: input.dtype.kernelElementType!,
                          count: input.count, stream: stream)
        }
        return out
    }
}

extension DType {
    /// The fp8.cu format of an fp8 dtype.
    var fp8Format: FP8Format? {
        switch self {
        case .float8E4M3: .e4m3
        case .float8E5M2: .e5m2
        default: nil
        }
    }
}
