import MegatronCUDA

/// `Ops.attention` and its backward on CUDA tensors through the flash-attention kernels of
/// CUDAKernels (bf16 / fp16, head dims that are multiples of 8 up to 256), or cuDNN's fused SDPA
/// when the context's `attentionBackend` allows it (`AttentionBackend`) and cuDNN takes the problem.
/// Each returns nil where neither applies; `Ops` then runs `ComposedAttention` on the device.
///
/// With dropout, forward and backward must run on the same implementation (each draws the mask
/// itself): `engine` decides from the problem alone, the same way both times. Our kernels draw the
/// CPU reference's Philox mask bit for bit; cuDNN draws its own (same probability, other elements).
enum CUDAAttention {
    /// Whether the fused kernels take these operands (dtype, head dim, alignment of every row).
    static func supports(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout) -> Bool {
        guard q.device != .cpu, q.dtype == k.dtype, q.dtype == v.dtype, let type = q.dtype.kernelElementType,
              let operands = operands(q: q, k: k, v: v, layout: layout) else { return false }
        return CUDAKernels.supportsAttention(problem(layout, causal: false, scale: 1, dropout: nil), type: type, operands: operands)
    }

    /// `backend` (default: the context's MEGATRON_ATTENTION setting) picks cuDNN or our kernels. A
    /// given dropout mask (`AttentionDropout(probability:keeping:)`) is the CPU reference's alone: nil.
    /// A sliding window or sinks (`masking`) run on our kernels: cuDNN's graph here has neither.
    static func forward(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, causal: Bool, scale: Float,
                        dropout: AttentionDropout? = nil, masking: AttentionMasking = .none,
                        backend: AttentionBackend? = nil) -> (output: Tensor, logSumExp: Tensor)? {
        guard supports(q: q, k: k, v: v, layout: layout), let type = q.dtype.kernelElementType,
              let inputs = operands(q: q, k: k, v: v, layout: layout), dropout == nil || dropout?.philox != nil else { return nil }
        let sinks = masking.sinks.map { $0.to(q.device).madeContiguous() }
        let bshd = Tensor.empty([layout.batch, layout.queries, layout.heads, layout.headDim], dtype: q.dtype, device: q.device)
        let output = layout.outputView(of: bshd)
        let lse = Tensor.empty(layout.logSumExpShape, dtype: .float32, device: q.device)
        guard let out = queryOperand(layout.groupedQueries(output)) else { return nil }
        let p = problem(layout, causal: causal, scale: scale, dropout: dropout, window: masking.window)
        run("attention", on: q.device) { context, stream in
            let operands: [SDPARole: AttentionOperand] = [.q: inputs[0], .k: inputs[1], .v: inputs[2], .o: out]
            if sinks == nil, let cudnn = try engine(backend, context, p, type, operands) {
                let ran = try runUnlessRefused(required: p.dropout != nil) {
                    try cudnn.attentionForwardCuDNN(output: out, logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1],
                                                    v: inputs[2], problem: p, type: type, stream: stream)
                }
                if ran { return }
            }
            try context.kernels.attentionForward(output: out, logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1],
                                                  v: inputs[2], problem: p, sinks: sinks?.deviceAddress ?? 0, type: type,
                                                  stream: stream)
        }
        return (output, lse)
    }

    /// `deterministic` (default: the context's MEGATRON_DETERMINISTIC setting) picks the fixed-order dQ pass
    /// over the atomic one (and our kernels over cuDNN, whose dQ sums are atomic; with dropout the forward's
    /// implementation, which the context's setting chose, runs again whatever `deterministic` says).
    static func backward(gradOutput: Tensor, q: Tensor, k: Tensor, v: Tensor, output: Tensor, logSumExp: Tensor,
                         layout: AttentionLayout, causal: Bool, scale: Float, dropout: AttentionDropout? = nil,
                         masking: AttentionMasking = .none, deterministic: Bool? = nil,
                         backend: AttentionBackend? = nil) -> (gradQ: Tensor, gradK: Tensor, gradV: Tensor)? {
        guard supports(q: q, k: k, v: v, layout: layout), let type = q.dtype.kernelElementType,
              gradOutput.dtype == q.dtype, output.dtype == q.dtype, dropout == nil || dropout?.philox != nil,
              let inputs = operands(q: q, k: k, v: v, layout: layout) else { return nil }
        // The output gradient may arrive with any strides; cuDNN's dropout plan was made for the output's
        // ([b, s, heads, d]), our kernels want the last dim contiguous.
        let g = dropout != nil && gradOutput.strides != output.strides ? laidOutLikeOutput(gradOutput, layout)
            : gradOutput.strides.last == 1 ? gradOutput : gradOutput.madeContiguous()
        let p = problem(layout, causal: causal, scale: scale, dropout: dropout, window: masking.window)
        guard let gradient = queryOperand(layout.groupedQueries(g)), let out = queryOperand(layout.groupedQueries(output)),
              CUDAKernels.supportsAttention(p, type: type, operands: [gradient, out])
        else { return nil }
        let lse = logSumExp.cast(to: .float32).madeContiguous()
        let (dq, dk, dv) = gradientBuffers(q: q, k: k, v: v)
        guard let gq = queryOperand(layout.groupedQueries(dq)), let gk = keyOperand(AttentionLayout.groupedKeys(dk)),
              let gv = keyOperand(AttentionLayout.groupedKeys(dv)) else { return nil }
        run("attentionBackward", on: q.device) { context, stream in
            let operands: [SDPARole: AttentionOperand] = [.q: inputs[0], .k: inputs[1], .v: inputs[2], .o: out, .dO: gradient,
                                                          .dQ: gq, .dK: gk, .dV: gv]
            // cuDNN sums dQ with atomics; a deterministic backward without dropout stays on our fixed-order kernels.
            let wantsDeterministic = deterministic ?? context.deterministic
            // With sinks the forward ran on our kernels (cuDNN's graph here has none): so does the backward.
            if masking.sinks == nil, p.dropout != nil || !wantsDeterministic, let cudnn = try engine(backend, context, p, type, operands) {
                let ran = try runUnlessRefused(required: p.dropout != nil) {
                    try cudnn.attentionBackwardCuDNN(gradQ: gq, gradK: gk, gradV: gv, gradient: gradient, output: out,
                                                     logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1], v: inputs[2],
                                                     problem: p, type: type, stream: stream)
                }
                if ran { return }
            }
            let delta = Tensor.empty(layout.logSumExpShape, dtype: .float32, device: q.device)
            let accumulator = wantsDeterministic ? nil
                : Tensor.zeros([layout.batch, layout.heads, layout.queries, layout.headDim], dtype: .float32, device: q.device)
            try context.kernels.attentionBackward(gradQ: gq, gradK: gk, gradV: gv, delta: delta.deviceAddress,
                                                   dqAccumulator: accumulator?.deviceAddress, gradient: gradient, output: out,
                                                   logSumExp: lse.deviceAddress, q: inputs[0], k: inputs[1], v: inputs[2],
                                                   problem: p, type: type, stream: stream)
        }
        return (dq, dk, dv)
    }

    /// `gradient` (q's logical shape) copied into the attention output's memory layout, `[b, s, heads, d]`.
    private static func laidOutLikeOutput(_ gradient: Tensor, _ layout: AttentionLayout) -> Tensor {
        let order = layout.queryRank == 4 ? [0, 2, 1, 3] : [0, 3, 1, 2, 4]
        let bshd = gradient.permuted(order).madeContiguous().reshaped([layout.batch, layout.queries, layout.heads, layout.headDim])
        return layout.outputView(of: bshd)
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

    private static func problem(_ layout: AttentionLayout, causal: Bool, scale: Float, dropout: AttentionDropout?,
                                window: Int? = nil) -> AttentionProblem {
        AttentionProblem(batch: layout.batch, groups: layout.groups, perGroup: layout.perGroup, queries: layout.queries,
                         keys: layout.keys, headDim: layout.headDim, causal: causal, scale: scale,
                         dropout: dropout.flatMap { d in d.philox.map { DropoutDraw(probability: d.probability, seed: $0.seed, offset: $0.offset) } },
                         window: window)
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

    /// cuDNN when `backend` (default: the context's) allows it and it may take the problem, nil when our
    /// kernels should run instead: `.kernels`, `.auto` without a loadable cuDNN, operands cuDNN's 4-D
    /// tensors cannot address, or, with dropout, a deterministic run or a problem whose forward or
    /// backward no cuDNN engine takes (the two must draw the same mask, so both run on one side). A
    /// cuDNN that `.cudnn` asked for but cannot be loaded throws (the op then stops with the loader's
    /// message naming what to install).
    private static func engine(_ backend: AttentionBackend?, _ context: CUDAContext, _ problem: AttentionProblem,
                               _ type: KernelElementType, _ operands: [SDPARole: AttentionOperand]) throws -> CuDNNAttention? {
        let chosen = backend ?? context.attentionBackend
        guard chosen != .kernels, problem.window == nil, let cudnn = try context.cudnnAttention(required: chosen == .cudnn),
              CuDNNAttention.shape(problem, type: type, operands: operands) != nil else { return nil }
        guard problem.dropout != nil else { return cudnn }
        let forward = operands.filter { [.q, .k, .v, .o].contains($0.key) }
        return !context.deterministic && cudnn.takesForwardAndBackward(problem, type: type, operands: forward) ? cudnn : nil
    }

    /// Runs `body`; false when cuDNN refused the problem (`isNotSupported`) and our kernels should run
    /// instead, which with dropout (`required`) cannot be: the other direction already ran on cuDNN.
    private static func runUnlessRefused(required: Bool, _ body: () throws -> Void) throws -> Bool {
        do {
            try body()
            return true
        } catch let error as CuDNNError where error.isNotSupported && !required {
            return false
        }
    }
}

extension Ops {
    /// Whether `attention(q:k:v:...)` runs the fused GPU kernels for these operands (CUDA tensors,
    /// bf16 or fp16, a head dim that is a multiple of 8 up to 256, aligned rows); elsewhere it runs
    /// the CPU reference.
    public static func attentionIsFused(q: Tensor, k: Tensor, v: Tensor) -> Bool {
        CUDAAttention.supports(q: q, k: k, v: v, layout: AttentionLayout(q: q, k: k, v: v))
    }

    /// Why attention with head dim `headDim` in `dtype` cannot run fused on a GPU (it would then
    /// materialize its [s, t] scores), nil when it can: fused attention takes bf16 and fp16, and head
    /// dims that are multiples of 8 up to 256. A training program checks this at start-up.
    public static func fusedAttentionProblem(headDim: Int, dtype: DType) -> String? {
        if let problem = CUDAKernels.attentionHeadDimProblem(headDim) { return problem }
        return dtype == .bfloat16 || dtype == .float16 ? nil : "fused attention takes bf16 and fp16, not \(dtype)"
    }
}
