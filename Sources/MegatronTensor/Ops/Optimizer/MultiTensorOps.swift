import MegatronCUDA

/// Multi-tensor kernels of the optimizer step on one GPU: a whole model's gradients or parameters in
/// one launch each, instead of a dozen elementwise ops per tensor (which cost more in launches than
/// in memory traffic for small tensors such as biases and norm weights).
///
/// ```swift
/// let normAndFlag = MultiTensorOps.globalNorm(grads).floats()   // [norm, 1 if inf/NaN else 0]
/// MultiTensorOps.adamW(params: masters, grads: grads, expAvg: m, expAvgSq: v, copies: bf16Weights,
///                      step: AdamWStep(learningRate: 3e-4, weightDecay: 0.1, step: 1))
/// ```
public enum MultiTensorOps {
    /// Global L2 norm of contiguous fp32 CUDA `tensors` (all on one device), deterministic. Returns a
    /// device tensor `[2]`: the norm, then 1 if any value is inf or NaN, else 0. Nothing waits for it.
    public static func globalNorm(_ tensors: [Tensor]) -> Tensor {
        let device = checked(tensors, "globalNorm")
        let out = Tensor.empty([2], dtype: .float32, device: device)
        let words = CUDAKernels.normTable(tensors.map { (address: $0.deviceAddress, count: $0.count) })
        let table = upload(words, to: device)
        let context = CUDAContext.of(device)
        context.run("multi-tensor global norm, \(tensors.count) tensors") {
            let nn = context.kernels
            let descriptor = DeviceTensorTable(address: table.deviceAddress, tensorCount: tensors.count,
                                               largestCount: tensors.map(\.count).max() ?? 0)
            let scratch = Tensor.empty([nn.gradNormScratchCount(descriptor)], dtype: .float32, device: device)
            try nn.gradNorm(out.deviceAddress, table: descriptor, scratch: scratch.deviceAddress, stream: context.stream)
        }
        return out
    }

    /// One AdamW step (torch.optim.AdamW's formula) over contiguous fp32 `params` with their fp32 `grads`
    /// and moments; where `copies[i]` is given (the model's bf16 / fp16 weight) it receives the new value.
    public static func adamW(params: [Tensor], grads: [Tensor], expAvg: [Tensor], expAvgSq: [Tensor], copies: [Tensor?],
                             step: AdamWStep) {
        let device = checked(params + grads + expAvg + expAvgSq, "adamW")
        precondition(Set([grads.count, expAvg.count, expAvgSq.count, copies.count]) == [params.count],
                     "adamW: \(params.count) params but \(grads.count) grads, \(expAvg.count) / \(expAvgSq.count) moments, \(copies.count) copies")
        guard !params.isEmpty else { return }
        for case let copy? in copies {
            precondition(copy.dtype == .bfloat16 && copy.isContiguous && copy.device == device,
                         "adamW: parameter copies must be contiguous bf16 on \(device) (the kernel writes bf16), got \(copy.dtype)")
        }
        let slots = params.indices.map { i in
            AdamWTensor(param: params[i].deviceAddress, gradient: grads[i].deviceAddress, expAvg: expAvg[i].deviceAddress,
                        expAvgSq: expAvgSq[i].deviceAddress, copy: copies[i]?.deviceAddress ?? 0, count: params[i].count)
        }
        let table = upload(AdamWTensor.table(slots), to: device)
        let context = CUDAContext.of(device)
        context.run("multi-tensor adamW, \(params.count) tensors") {
            try context.kernels.adamW(DeviceTensorTable(address: table.deviceAddress, tensorCount: params.count,
                                                         largestCount: params.map(\.count).max()!),
                                       gradientType: .float32, step: step, stream: context.stream)
        }
    }

    private static func checked(_ tensors: [Tensor], _ op: String) -> Device {
        guard let first = tensors.first else { return .cuda(0) }
        for t in tensors {
            precondition(t.device == first.device && t.device != .cpu, "\(op): every tensor must be on one GPU, got \(t.device)")
            precondition(t.dtype == .float32 && t.isContiguous, "\(op): tensors must be contiguous fp32, got \(t.dtype) \(t.shape)")
        }
        return first.device
    }

    /// A descriptor table on the device; the allocator keeps its block until the stream has used it.
    private static func upload(_ words: [UInt64], to device: Device) -> Tensor {
        Tensor(shape: [words.count], ints: words.map { Int(Int64(bitPattern: $0)) }, dtype: .int64).to(device)
    }
}
