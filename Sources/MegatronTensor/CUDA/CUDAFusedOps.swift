import MegatronCUDA

/// The fused `Ops` on CUDA tensors through MegatronCUDA's CUDAKernels, one extension per op family in its
/// folder under Ops/ (CUDASoftmaxOps.swift, CUDANormOps.swift, ...). Softmax, cross-entropy and dropout take
/// every dtype: one the kernels lack (fp8, integers) or operands of different dtypes run the fp32 kernel on
/// fp32 casts made on the device, with the result rounded once to its dtype, as the CPU computes. The norms
/// and activations return nil where their kernels do not apply; `Ops` then takes its general device path.
enum CUDAFusedOps {
    /// Element type, row width and row count of a row kernel over `x`, when every given tensor shares x's dtype.
    static func rowShape(_ x: Tensor, sameType others: [Tensor?]) -> (KernelElementType, Int, Int)? {
        guard x.rank >= 1, x.count > 0, let type = x.dtype.kernelElementType,
              others.allSatisfy({ $0 == nil || $0!.dtype == x.dtype }) else { return nil }
        let width = x.shape[x.rank - 1]
        return (type, width, x.count / width)
    }

    static func run(_ op: String, on device: Device, _ body: (CUDAKernels, CUDAStream) throws -> Void) {
        let context = CUDAContext.of(device)
        context.run("fused \(op)") { try body(context.kernels, context.stream) }
    }
}

extension DType {
    /// The CUDAKernels element type of this dtype, if those kernels take it.
    var kernelElementType: KernelElementType? {
        switch self {
        case .float32: .float32
        case .bfloat16: .bfloat16
        case .float16: .float16
        default: nil
        }
    }
}
