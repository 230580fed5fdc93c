import MegatronCUDA

/// The CUDA side of the FP8 ops: cuBLASLt's FP8 GEMM and the scale kernels of fp8.cu.
enum CUDAFP8Matmul {
    static func product(_ a: FP8Tensor, _ b: FP8Tensor, outputType: DType, fastAccumulation: Bool, on device: Device) -> Tensor {
        guard let output = outputType.gemmDataType, let aFormat = a.data.dtype.fp8Format, let bFormat = b.data.dtype.fp8Format else {
            preconditionFailure("fp8Matmul writes fp32, bf16 or fp16 from fp8 operands, got \(outputType)")
        }
        let (m, n, k) = (a.shape[0], b.shape[0], a.shape[1])
        let out = Tensor.empty([m, n], dtype: outputType, device: device)
        let context = CUDAContext.of(device)
        let problem = FP8GemmProblem(m: m, n: n, k: k, aFormat: aFormat, bFormat: bFormat, outputType: output,
                                     fastAccumulation: fastAccumulation)
        let (qa, qb) = (a.data.madeContiguous(), b.data.madeContiguous())
        let (sa, sb) = (a.scaleInverse.to(device).madeContiguous(), b.scaleInverse.to(device).madeContiguous())
        context.run("fp8 matmul \(aFormat)x\(bFormat) \(m)x\(k)x\(n)") {
            try context.fp8Gemm().run(problem, a: qa.deviceAddress, aScaleInverse: sa.deviceAddress,
                                      b: qb.deviceAddress, bScaleInverse: sb.deviceAddress, d: out.deviceAddress,
                                      stream: context.stream)
        }
        return out
    }

    static func delayedUpdate(history: Tensor, amax: Tensor, scale: Tensor, fp8Max: Float, margin: Float,
                              algo: FP8AmaxComputeAlgo, on device: Device) -> (history: Tensor, scale: Tensor, scaleInverse: Tensor) {
        let newHistory = Tensor.empty(history.shape, dtype: .float32, device: device)
        let (newScale, newInverse) = (Tensor.empty([1], dtype: .float32, device: device), Tensor.empty([1], dtype: .float32, device: device))
        let (h, a, s) = (history.madeContiguous(), amax.madeContiguous(), scale.madeContiguous())
        CUDAFusedOps.run("fp8 delayed scale update", on: device) { nn, stream in
            try nn.fp8DelayedScaleUpdate(newHistory: newHistory.deviceAddress, newScale: newScale.deviceAddress,
                                         newScaleInverse: newInverse.deviceAddress, history: h.deviceAddress,
                                         amax: a.deviceAddress, scale: s.deviceAddress, length: history.count,
                                         fp8Max: fp8Max, margin: margin, useMax: algo == .max, stream: stream)
        }
        return (newHistory, newScale, newInverse)
    }

    static func currentScale(amax: Tensor, fp8Max: Float, on device: Device) -> (scale: Tensor, scaleInverse: Tensor) {
        let (scale, inverse) = (Tensor.empty([1], dtype: .float32, device: device), Tensor.empty([1], dtype: .float32, device: device))
        let a = amax.madeContiguous()
        CUDAFusedOps.run("fp8 current scale", on: device) { nn, stream in
            try nn.fp8CurrentScale(scale: scale.deviceAddress, scaleInverse: inverse.deviceAddress, amax: a.deviceAddress,
                                   fp8Max: fp8Max, stream: stream)
        }
        return (scale, inverse)
    }
}
