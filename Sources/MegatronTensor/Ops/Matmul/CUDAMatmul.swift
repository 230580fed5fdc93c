import MegatronCUDA

extension CUDAOps {
    /// `[..., m, k] x [..., k, n]` through cuBLASLt with fp32 accumulation: bf16 / fp16 operands give
    /// a bf16 / fp16 result, fp32 operands run as a full-precision SGEMM (no TF32), so results match
    /// the CPU's fp32 product within rounding. Transposed views are read in place; batches become
    /// one strided-batch call where their offsets allow, one call each otherwise.
    static func matmul(_ a: Tensor, _ b: Tensor, batch: [Int], m: Int, k: Int, n: Int, dtype: DType) -> Tensor {
        let device = device(of: [a, b], op: "matmul")
        let gemmType = dtype.isFloatingPoint ? dtype : .float32
        guard let dataType = gemmType.gemmDataType else {
            preconditionFailure("matmul on CUDA takes fp32, bf16 or fp16 operands, got \(a.dtype) and \(b.dtype)")
        }
        let out = Tensor.empty(batch + [m, n], dtype: gemmType, device: device)
        if out.count > 0 {
            let context = CUDAContext.of(device)
            if k == 0 {
                context.run("matmul k=0") { try context.device.zero(out.deviceAddress, bytes: out.count * gemmType.byteSize, stream: context.stream) }
            } else {
                let ea = GemmOperand(a.cast(to: gemmType).expanded(to: batch + [m, k]))
                let eb = GemmOperand(b.cast(to: gemmType).expanded(to: batch + [k, n]))
                var problem = GemmProblem(m: m, n: n, k: k, transposeA: ea.transposed, transposeB: eb.transposed,
                                          inputType: dataType, outputType: dataType)
                (problem.lda, problem.ldb) = (ea.leading, eb.leading)
                context.run("matmul \(gemmType) \(batch)x\(m)x\(k)x\(n) \(ea.transposed ? "T" : "N")\(eb.transposed ? "T" : "N")") {
                    try runBatches(problem, ea, eb, out, gemm: try context.gemm(), stream: context.stream)
                }
            }
        }
        return gemmType == dtype ? out : contiguousCopy(out, dtype: dtype)
    }

    private static func runBatches(_ problem: GemmProblem, _ a: GemmOperand, _ b: GemmOperand, _ out: Tensor,
                                   gemm: CublasLtGemm, stream: CUDAStream) throws {
        let batches = a.batchOffsets.count
        let size = out.dtype.byteSize
        let outStride = problem.m * problem.n
        func address(_ t: Tensor, _ elementOffset: Int) -> UInt64 { t.deviceAddress + UInt64(elementOffset * size) }
        var p = problem
        if batches == 1 {
            try gemm.run(p, a: address(a.base, a.batchOffsets[0]), b: address(b.base, b.batchOffsets[0]),
                         d: out.deviceAddress, stream: stream)
            return
        }
        if let sa = a.uniformBatchStride, let sb = b.uniformBatchStride, sa > 0, sb > 0 {
            (p.batchCount, p.strideA, p.strideB, p.strideD) = (batches, sa, sb, outStride)
            try gemm.run(p, a: address(a.base, a.batchOffsets[0]), b: address(b.base, b.batchOffsets[0]),
                         d: out.deviceAddress, stream: stream)
            return
        }
        if let sa = a.uniformBatchStride, b.uniformBatchStride == 0, !a.transposed, sa == problem.m * a.leading {
            // A shared right operand (a linear layer's weight): the batches of A are one tall matrix.
            p.m = problem.m * batches
            try gemm.run(p, a: address(a.base, a.batchOffsets[0]), b: address(b.base, b.batchOffsets[0]),
                         d: out.deviceAddress, stream: stream)
            return
        }
        for i in 0..<batches {
            try gemm.run(p, a: address(a.base, a.batchOffsets[i]), b: address(b.base, b.batchOffsets[i]),
                         d: out.deviceAddress + UInt64(i * outStride * size), stream: stream)
        }
    }
}

extension DType {
    /// The cuBLASLt element type of this dtype, if GEMMs take it.
    var gemmDataType: GemmDataType? {
        switch self {
        case .float32: .float32
        case .bfloat16: .bfloat16
        case .float16: .float16
        default: nil
        }
    }
}

extension CUDAOps {
    /// `x W^T + bias` as one GEMM with cuBLASLt's bias epilogue, for bf16 / fp16 operands of one dtype;
    /// nil for what it does not take (the caller then multiplies and adds).
    static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor? {
        guard x.dtype == weight.dtype, bias == nil || bias!.dtype == x.dtype, x.dtype != .float32,
              let dataType = x.dtype.gemmDataType, x.count > 0 else { return nil }
        let (out, inFeatures) = (weight.shape[0], weight.shape[1])
        let tokens = x.count / inFeatures
        let input = x.madeContiguous(), w = weight.madeContiguous(), b = bias?.madeContiguous()
        let y = Tensor.empty(Array(x.shape.dropLast()) + [out], dtype: x.dtype, device: x.device)
        var problem = GemmProblem(m: tokens, n: out, k: inFeatures, transposeB: true, inputType: dataType,
                                  outputType: dataType)
        problem.epilogue = b == nil ? .none : .bias
        let context = CUDAContext.of(x.device)
        context.run("linear \(x.dtype) \(tokens)x\(inFeatures)->\(out)\(b == nil ? "" : " +bias")") {
            try context.gemm().run(problem, a: input.deviceAddress, b: w.deviceAddress, d: y.deviceAddress,
                                   bias: b?.deviceAddress ?? 0, stream: context.stream)
        }
        return y
    }
}

extension CUDAOps {
    /// dW = gᵀ x for `g [tokens, out]`, `x [tokens, in]` of one 16-bit dtype, with db = Σ g fused into
    /// the GEMM (cuBLASLt's BGRADB epilogue); nil for what it does not take.
    static func linearParameterGradients(_ g: Tensor, _ x: Tensor, withBias: Bool) -> (weight: Tensor, bias: Tensor?)? {
        guard g.dtype == x.dtype, g.dtype != .float32, g.dtype.gemmDataType != nil, g.count > 0, x.count > 0 else { return nil }
        let dw = Tensor.empty([g.shape[1], x.shape[1]], dtype: g.dtype, device: g.device)
        let db = withBias ? Tensor.empty([g.shape[1]], dtype: g.dtype, device: g.device) : nil
        weightGradientGemm(g, x, into: dw, accumulate: false, biasGradient: db)
        return (dw, db)
    }

    /// Whether `accumulateLinearWeightGradient` takes `g` and `x`: one GEMM dtype, both non-empty.
    static func acceptsWeightGradientAccumulation(_ g: Tensor, _ x: Tensor) -> Bool {
        g.dtype == x.dtype && g.dtype.gemmDataType != nil && g.count > 0 && x.count > 0
    }

    /// mainGrad += gᵀ x as one cuBLASLt GEMM with C = D = `mainGrad` (fp32, contiguous), beta 1 and fp32
    /// compute. For 16-bit operands the bias gradient Σ g (returned with `withBias`) comes from the same
    /// GEMM's BGRADB epilogue, in fp32 (the bias vector takes D's type); fp32 operands, whose GEMM runs
    /// without that epilogue, sum it separately.
    static func accumulateLinearWeightGradient(_ g: Tensor, _ x: Tensor, into mainGrad: Tensor, withBias: Bool) -> Tensor? {
        precondition(acceptsWeightGradientAccumulation(g, x) && mainGrad.dtype == .float32 && mainGrad.isContiguous)
        let epilogueBias = withBias && g.dtype != .float32
        let db = epilogueBias ? Tensor.empty([g.shape[1]], dtype: .float32, device: g.device) : nil
        weightGradientGemm(g, x, into: mainGrad, accumulate: true, biasGradient: db)
        if withBias && !epilogueBias { return Ops.reduce(g, dims: [0], .sum) }
        return db
    }

    /// D (= `weightGradient`, [out, in]) = gᵀ x, or D += gᵀ x with `accumulate`; `biasGradient`, when
    /// given, receives Σ_tokens g from the BGRADB epilogue.
    private static func weightGradientGemm(_ g: Tensor, _ x: Tensor, into weightGradient: Tensor, accumulate: Bool,
                                           biasGradient: Tensor?) {
        let (tokens, out, inFeatures) = (g.shape[0], g.shape[1], x.shape[1])
        let (dy, input) = (g.madeContiguous(), x.madeContiguous())
        var problem = GemmProblem(m: out, n: inFeatures, k: tokens, transposeA: true, inputType: g.dtype.gemmDataType!,
                                  outputType: weightGradient.dtype.gemmDataType!)
        problem.epilogue = biasGradient == nil ? .none : .biasGradientFromA
        let context = CUDAContext.of(g.device)
        context.run("linear wgrad \(g.dtype)\(accumulate ? " += fp32" : "") \(out)x\(inFeatures) over \(tokens)\(biasGradient == nil ? "" : " +bgrad")") {
            try context.gemm().run(problem, a: dy.deviceAddress, b: input.deviceAddress, d: weightGradient.deviceAddress,
                                   beta: accumulate ? 1 : 0, bias: biasGradient?.deviceAddress ?? 0, stream: context.stream)
        }
    }
}

extension CUDAOps {
    /// Whether the GELU epilogues take a layer of `features` GELU units in `dtype`: 16-bit operands
    /// (fp32 runs as a plain SGEMM without them) and a pre-activation row stride cuBLASLt accepts for
    /// its aux matrix (a multiple of 8 elements, `GemmProblem.validate`).
    static func geluEpilogueApplies(features: Int, dtype: DType) -> Bool {
        dtype != .float32 && dtype.gemmDataType != nil && features % 8 == 0
    }

    /// `h = gelu_tanh(x Wᵀ + b)` and `pre = x Wᵀ + b` from one GEMM with cuBLASLt's GELU_AUX(_BIAS)
    /// epilogue (D = h, aux = pre); nil for what it does not take, or when cuBLASLt has no algorithm
    /// for the epilogue (the caller then runs the linear layer and the activation apart).
    static func linearGelu(_ x: Tensor, weight: Tensor, bias: Tensor?) -> (output: Tensor, preActivation: Tensor)? {
        let (features, inFeatures) = (weight.shape[0], weight.shape[1])
        guard x.dtype == weight.dtype, bias == nil || bias!.dtype == x.dtype, x.count > 0,
              geluEpilogueApplies(features: features, dtype: x.dtype), let dataType = x.dtype.gemmDataType else { return nil }
        let tokens = x.count / inFeatures
        let input = x.madeContiguous(), w = weight.madeContiguous(), b = bias?.madeContiguous()
        let shape = Array(x.shape.dropLast()) + [features]
        let h = Tensor.empty(shape, dtype: x.dtype, device: x.device)
        let pre = Tensor.empty(shape, dtype: x.dtype, device: x.device)
        var problem = GemmProblem(m: tokens, n: features, k: inFeatures, transposeB: true, inputType: dataType, outputType: dataType)
        problem.epilogue = .geluAux(withBias: b != nil)
        let ran = runGeluEpilogue(on: x.device, label: "linear+gelu \(x.dtype) \(tokens)x\(inFeatures)->\(features)") {
            try $0.run(problem, a: input.deviceAddress, b: w.deviceAddress, d: h.deviceAddress,
                       bias: b?.deviceAddress ?? 0, aux: pre.deviceAddress, stream: $1)
        }
        return ran ? (h, pre) : nil
    }

    /// `(g · W) ⊙ gelu_tanh'(pre)` for `g [tokens, out]`, `W [out, features]`, `pre [tokens, features]`:
    /// the input gradient of `linear(gelu(pre), W)` as one GEMM with cuBLASLt's DGELU epilogue (aux = pre);
    /// nil for what it does not take or when cuBLASLt has no algorithm for it.
    static func geluLinearInputGradient(_ g: Tensor, weight: Tensor, preActivation pre: Tensor) -> Tensor? {
        let (out, features) = (weight.shape[0], weight.shape[1])
        guard g.dtype == weight.dtype, pre.dtype == g.dtype, g.count > 0,
              geluEpilogueApplies(features: features, dtype: g.dtype), let dataType = g.dtype.gemmDataType else { return nil }
        let tokens = g.count / out
        let dy = g.madeContiguous(), w = weight.madeContiguous(), aux = pre.madeContiguous()
        let gradient = Tensor.empty(pre.shape, dtype: g.dtype, device: g.device)
        var problem = GemmProblem(m: tokens, n: features, k: out, inputType: dataType, outputType: dataType)
        problem.epilogue = .dgelu(biasGradient: false)
        let ran = runGeluEpilogue(on: g.device, label: "dgrad+dgelu \(g.dtype) \(tokens)x\(out)->\(features)") {
            try $0.run(problem, a: dy.deviceAddress, b: w.deviceAddress, d: gradient.deviceAddress,
                       aux: aux.deviceAddress, stream: $1)
        }
        return ran ? gradient : nil
    }

    /// Runs `body` and says whether it ran: false when cuBLASLt's heuristic offers no algorithm for the
    /// epilogue (nothing was enqueued then); any other failure stops as every GEMM's does.
    private static func runGeluEpilogue(on device: Device, label: @autoclosure () -> String,
                                        _ body: (CublasLtGemm, CUDAStream) throws -> Void) -> Bool {
        let context = CUDAContext.of(device)
        return context.run(label()) {
            do {
                try body(try context.gemm(), context.stream)
                return true
            } catch CUDAError.cublas(call: "cublasLtMatmulAlgoGetHeuristic", _, _) {
                return false
            }
        }
    }
}
