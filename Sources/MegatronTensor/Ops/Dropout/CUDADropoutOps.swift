import MegatronCUDA

/// Dropout on CUDA tensors (Kernels/Elementwise/dropout.cu).
extension CUDAFusedOps {
    /// Inverted dropout drawing the same Philox numbers as the CPU, element for element.
    static func dropout(_ x: Tensor, p: Float, seed: UInt64, offset: UInt64) -> Tensor {
        guard let type = x.dtype.kernelElementType else {
            return dropout(x.cast(to: .float32), p: p, seed: seed, offset: offset).cast(to: x.dtype)
        }
        let input = x.madeContiguous()
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if x.count == 0 { return out }
        run("dropout", on: x.device) { nn, stream in
            try nn.dropout(out.deviceAddress, input: input.deviceAddress, count: x.count, probability: p, seed: seed,
                           offset: offset, type: type, stream: stream)
        }
        return out
    }
}
