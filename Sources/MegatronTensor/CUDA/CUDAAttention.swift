import MegatronCUDA

/// `Ops.attention` and its backward on CUDA tensors through the flash-attention kernels of
/// NeuralKernels (bf16 / fp16, head dims 64 and 128), or cuDNN's fused SDPA when the context's
/// `attentionBackend` allows it (`AttentionBackend`) and cuDNN takes the problem. Each
/// returns nil where neither applies; `Ops` then runs the CPU reference on host copies.
enum CUDAAttention {
    /// Whether the fused kernels take these operands (dtype, head dim, alignment of every row).
    static func supports(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout) -> Bool {
        guard q.device != .cpu, q.dtype == k.dtype, q.dtype == v.dtype, let type = q.dtype.kernelElementType,
              let operands = operands(q: q, k: k, v: v, layout: layout) else { return false }
        return NeuralKernels.supportsAttention(problem(layout, causal: false, scale: 1), type: type, operands: operands)
    }

    /// `backend` (default: the context's MEGATRON_ATTENTION setting) picks cuDNN or our kernels.
    static func forward(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, causal: Bool, scale: Float,
                        backend: AttentionBackend? = nil) -> (output: Tensor, logSumExp: Tensor)? {
        guard supports(q: q, k: k, v: v, layout: layout), let type = q.dtype.kernelElementType,
              let inputs = operands(q: q, k: k, v: v, layout: layout) else { return nil }
        let bshd = Tensor.empty([layout.batch, layout.queries, layout.heads, layout.headDim], dtype: q.dtype, device: q.device)
        let output = layout.outputView(of: bshd)
        let lse = Tensor.empty(layout.logSumExpShape, dtype: .float32, device: q.device)
        guard let out = queryOperand(layout.groupedQueries(output)) else { return nil }
        let p = problem(layout, causal: causal, scale: scale)
        run("attention", on: q.device) { context, stream in
            let onCuDNN = try viaCuDNN(backend, context, p, type, [.q: inputs[0], .k: inputs[1], .v: inputs[2], .o: out]) {
                try $0.attentionForwardCuDNN(output: out, logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1], v: inputs[2],
                                             problem: p, type: type, stream: stream)
            }
            guard !onCuDNN else { return }
            try context.neural().attentionForward(output: out, logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1],
                                                  v: inputs[2], problem: p, type: type, stream: stream)
        }
        return (output, lse)
    }

    /// `deterministic` (default: the context's MEGATRON_DETERMINISTIC setting) picks the fixed-order dQ pass
    /// over the atomic one (and our kernels over cuDNN, whose dQ sums are atomic).
    static func backward(gradOutput: Tensor, q: Tensor, k: Tensor, v: Tensor, output: Tensor, logSumExp: Tensor,
                         layout: AttentionLayout, causal: Bool, scale: Float,
                         deterministic: Bool? = nil, backend: AttentionBackend? = nil) -> (gradQ: Tensor, gradK: Tensor, gradV: Tensor)? {
        guard supports(q: q, k: k, v: v, layout: layout), let type = q.dtype.kernelElementType,
              gradOutput.dtype == q.dtype, output.dtype == q.dtype,
              let inputs = operands(q: q, k: k, v: v, layout: layout) else { return nil }
        // The output gradient may arrive with any strides; the kernels want the last dim contiguous.
        let g = gradOutput.strides.last == 1 ? gradOutput : gradOutput.contiguous()
        guard let gradient = queryOperand(layout.groupedQueries(g)), let out = queryOperand(layout.groupedQueries(output)),
              NeuralKernels.supportsAttention(problem(layout, causal: causal, scale: scale), type: type, operands: [gradient, out])
        else { return nil }
        let lse = logSumExp.cast(to: .float32).contiguous()
        let (dq, dk, dv) = gradientBuffers(q: q, k: k, v: v)
        guard let gq = queryOperand(layout.groupedQueries(dq)), let gk = keyOperand(AttentionLayout.groupedKeys(dk)),
              let gv = keyOperand(AttentionLayout.groupedKeys(dv)) else { return nil }
        let p = problem(layout, causal: causal, scale: scale)
        run("attentionBackward", on: q.device) { context, stream in
            let operands: [SDPARole: AttentionOperand] = [.q: inputs[0], .k: inputs[1], .v: inputs[2], .o: out, .dO: gradient,
                                                          .dQ: gq, .dK: gk, .dV: gv]
            // cuDNN sums dQ with atomics; a deterministic backward stays on our fixed-order kernels.
            let wantsDeterministic = deterministic ?? context.deterministic
            let onCuDNN = try !wantsDeterministic && viaCuDNN(backend, context, p, type, operands) {
                try $0.attentionBackwardCuDNN(gradQ: gq, gradK: gk, gradV: gv, gradient: gradient, output: out,
                                              logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1], v: inputs[2],
                                              problem: p, type: type, stream: stream)
            }
            guard !onCuDNN else { return }
            let delta = Tensor.empty(layout.logSumExpShape, dtype: .float32, device: q.device)
            let accumulator = wantsDeterministic ? nil
                : Tensor.zeros([layout.batch, layout.heads, layout.queries, layout.headDim], dtype: .float32, device: q.device)
            try context.neural().attentionBackward(gradQ: gq, gradK: gk, gradV: gv, delta: delta.deviceAddress,
                                                   dqAccumulator: accumulator?.deviceAddress, gradient: gradient, output: out,
                                                   logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1], v: inputs[2],
                                                   problem: p, type: type, stream: stream)
        }
        return (dq, dk, dv)
    }

    /// Gradient tensors for q, k and v. When the three are views into one buffer that holds nothing
    /// else (slices of a fused QKV projection), the gradients are the same views of one new buffer, so
    /// the projection's gradient is that buffer as it stands (`split`'s backward then copies nothing).
    static func gradientBuffers(q: Tensor, k: Tensor, v: Tensor) -> (Tensor, Tensor, Tensor) {
        let storage = q.storage
        if k.storage === storage, v.storage === storage,
           storage.byteCount == (q.count + k.count + v.count) * q.dtype.byteSize {
            let base = Tensor.empty([storage.byteCount / q.dtype.byteSize], dtype: q.dtype, device: q.device)
            let mirror = { (x: Tensor) in
                Tensor(storage: base.storage, shape: x.shape, strides: x.strides, offset: x.offset, dtype: x.dtype)
            }
            return (mirror(q), mirror(k), mirror(v))
        }
        return (Tensor.empty(q.shape, dtype: q.dtype, device: q.device), Tensor.empty(k.shape, dtype: k.dtype, device: k.device),
                Tensor.empty(v.shape, dtype: v.dtype, device: v.device))
    }

    private static func problem(_ layout: AttentionLayout, causal: Bool, scale: Float) -> AttentionProblem {
        AttentionProblem(batch: layout.batch, groups: layout.groups, perGroup: layout.perGroup, queries: layout.queries,
                         keys: layout.keys, headDim: layout.headDim, causal: causal, scale: scale)
    }

    /// q, k, v as kernel operands, or nil when a last dim is not contiguous.
    private static func operands(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout) -> [AttentionOperand]? {
        guard let q = queryOperand(layout.groupedQueries(q)), let k = keyOperand(AttentionLayout.groupedKeys(k)),
              let v = keyOperand(AttentionLayout.groupedKeys(v)) else { return nil }
        return [q, k, v]
    }

    /// A `[b, g, p, s, d]` view as an operand.
    private static func queryOperand(_ x: Tensor) -> AttentionOperand? {
        guard x.strides[4] == 1 || x.shape[4] == 1 else { return nil }
        return AttentionOperand(address: x.deviceAddress, batchStride: x.strides[0], groupStride: x.strides[1],
                                headStride: x.strides[2], rowStride: x.strides[3])
    }

    /// A `[b, g, t, d]` view as an operand.
    private static func keyOperand(_ x: Tensor) -> AttentionOperand? {
        guard x.strides[3] == 1 || x.shape[3] == 1 else { return nil }
        return AttentionOperand(address: x.deviceAddress, batchStride: x.strides[0], groupStride: x.strides[1],
                                rowStride: x.strides[2])
    }

    private static func run(_ op: String, on device: Device, _ body: (CUDAContext, CUDAStream) throws -> Void) {
        let context = CUDAContext.of(device)
        context.run(op) { try body(context, context.stream) }
    }

    /// Runs `body` on cuDNN when `backend` (default: the context's) allows it and returns true; false
    /// when our kernels should run instead: `.kernels`, `.auto` without a loadable cuDNN, operands
    /// cuDNN's 4-D tensors cannot address, or a problem no cuDNN engine takes. A cuDNN that `.cudnn`
    /// asked for but cannot be loaded throws (the op then stops with the loader's message naming what to install).
    private static func viaCuDNN(_ backend: AttentionBackend?, _ context: CUDAContext, _ problem: AttentionProblem,
                                 _ type: KernelElementType, _ operands: [SDPARole: AttentionOperand],
                                 _ body: (CuDNNAttention) throws -> Void) throws -> Bool {
        let chosen = backend ?? context.attentionBackend
        guard chosen != .kernels, let cudnn = try context.cudnnAttention(required: chosen == .cudnn) else { return false }
        guard CuDNNAttention.shape(problem, type: type, operands: operands) != nil else { return false }
        do {
            try body(cudnn)
            return true
        } catch let error as CuDNNError where error.isNotSupported {
            return false
        }
    }
}

extension Ops {
    /// Whether `attention(q:k:v:...)` runs the fused GPU kernels for these operands (CUDA tensors,
    /// bf16 or fp16, head dim 64 or 128, aligned rows); elsewhere it runs the CPU reference.
    public static func attentionIsFused(q: Tensor, k: Tensor, v: Tensor) -> Bool {
        CUDAAttention.supports(q: q, k: k, v: v, layout: AttentionLayout(q: q, k: k, v: v))
    }
}
