import MegatronCUDA

/// `Ops.rotaryEmbedding` on CUDA tensors: one CUDAKernels launch reading x through its strides
/// (q and k are strided views of the fused QKV projection) and writing a contiguous result. A dtype
/// the kernel lacks (fp8) runs the fp32 kernel on fp32 casts made on the device, rounded once to x's dtype.
enum CUDARotary {
    /// `cos` and `sin` are in x's dtype (`Ops.rotaryEmbedding` casts them).
    static func rotaryEmbedding(_ x: Tensor, cos: Tensor, sin: Tensor, geometry g: RotaryGeometry, backward: Bool) -> Tensor {
        guard let type = x.dtype.kernelElementType, cos.dtype == x.dtype, sin.dtype == x.dtype else {
            let (x32, cos32, sin32) = (x.cast(to: .float32), cos.cast(to: .float32), sin.cast(to: .float32))
            return rotaryEmbedding(x32, cos: cos32, sin: sin32, geometry: g, backward: backward).cast(to: x.dtype)
        }
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if x.count == 0 { return out }
        // The kernel wants the channels contiguous; every other dim may have any stride.
        let input = x.strides.last == 1 || g.headDim == 1 ? x : x.madeContiguous()
        let (cosTable, sinTable) = (cos.madeContiguous(), sin.madeContiguous())
        let lead = input.rank - 2, padding = 3 - lead
        let problem = RotaryProblem(outer: Array(input.shape.prefix(lead)) + Array(repeating: 1, count: padding),
                                    sequence: g.sequence, headDim: g.headDim, rotaryDim: g.rotaryDim,
                                    strides: Array(input.strides.prefix(lead)) + Array(repeating: 0, count: padding)
                                        + [input.strides[lead]],
                                    tableStride: g.perBatchRow ? g.sequence * g.rotaryDim : 0, backward: backward)
        CUDAFusedOps.run("rotaryEmbedding", on: x.device) { nn, stream in
            try nn.rotaryEmbedding(out.deviceAddress, input: input.deviceAddress, cos: cosTable.deviceAddress,
                                   sin: sinTable.deviceAddress, problem: problem, type: type, stream: stream)
        }
        return out
    }
}
