import CCUDA

/// The part of a cuBLASLt GEMM plan every flavour shares (CublasLtGemm's and CublasLtFP8Gemm's): one matmul
/// descriptor (fp32 compute and scale) with the layouts of its A, B and D (D serving as C too), created and destroyed
/// together, the heuristic's algorithms for them, and the enqueue. Everything is in cuBLASLt's column-major terms:
/// its A is our row-major B and its B our A (see ColumnMajorGemm).
class CublasLtMatmulPlan {
    /// One operand's column-major layout: `rows` x `cols` of cuBLASLt data type `type`, leading dimension `ld`;
    /// `batchCount` > 1 makes it a strided batch.
    struct Layout {
        var type: Int32
        var rows: Int, cols: Int, ld: Int
        var batchCount = 1, batchStride = 0
    }

    let lt: CCUDACublasLt
    let descriptor: cublasLtMatmulDesc_t
    let layoutA: cublasLtMatrixLayout_t, layoutB: cublasLtMatrixLayout_t, layoutD: cublasLtMatrixLayout_t
    var algorithm = cublasLtMatmulAlgo_t()

    init(lt: CCUDACublasLt, a: Layout, b: Layout, d: Layout, transA: Bool, transB: Bool) throws {
        self.lt = lt
        var descriptor: cublasLtMatmulDesc_t?
        try CublasLtGemm.check(lt, lt.cublasLtMatmulDescCreate(&descriptor, Int32(CCUBLAS_COMPUTE_32F), Int32(CCUDA_R_32F)),
                               "cublasLtMatmulDescCreate")
        self.descriptor = descriptor!
        layoutA = try Self.makeLayout(lt, a)
        layoutB = try Self.makeLayout(lt, b)
        layoutD = try Self.makeLayout(lt, d)
        var opA = Int32(transA ? CCUBLAS_OP_T : CCUBLAS_OP_N), opB = Int32(transB ? CCUBLAS_OP_T : CCUBLAS_OP_N)
        try set(CCUBLASLT_MATMUL_DESC_TRANSA, &opA, "transA")
        try set(CCUBLASLT_MATMUL_DESC_TRANSB, &opB, "transB")
    }

    deinit {
        _ = lt.cublasLtMatrixLayoutDestroy(layoutA)
        _ = lt.cublasLtMatrixLayoutDestroy(layoutB)
        _ = lt.cublasLtMatrixLayoutDestroy(layoutD)
        _ = lt.cublasLtMatmulDescDestroy(descriptor)
    }

    private static func makeLayout(_ lt: CCUDACublasLt, _ l: Layout) throws -> cublasLtMatrixLayout_t {
        var layout: cublasLtMatrixLayout_t?
        try CublasLtGemm.check(lt, lt.cublasLtMatrixLayoutCreate(&layout, l.type, UInt64(l.rows), UInt64(l.cols), Int64(l.ld)),
                               "cublasLtMatrixLayoutCreate")
        if l.batchCount > 1 {
            var count = Int32(l.batchCount), stride = Int64(l.batchStride)
            try CublasLtGemm.check(lt, lt.cublasLtMatrixLayoutSetAttribute(layout!, Int32(CCUBLASLT_MATRIX_LAYOUT_BATCH_COUNT), &count, 4),
                                   "cublasLtMatrixLayoutSetAttribute(batch count)")
            try CublasLtGemm.check(lt, lt.cublasLtMatrixLayoutSetAttribute(layout!, Int32(CCUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET), &stride, 8),
                                   "cublasLtMatrixLayoutSetAttribute(batch stride)")
        }
        return layout!
    }

    /// Sets one descriptor attribute (a CUBLASLT_MATMUL_DESC_* value) to `value`'s bytes.
    func set<T: BitwiseCopyable>(_ attribute: Int, _ value: inout T, _ label: String) throws {
        let status = withUnsafeBytes(of: value) {
            lt.cublasLtMatmulDescSetAttribute(descriptor, Int32(attribute), $0.baseAddress!, $0.count)
        }
        try CublasLtGemm.check(lt, status, "cublasLtMatmulDescSetAttribute(\(label))")
    }

    /// The heuristic's best `count` usable algorithms, best first, within CublasLtGemm's workspace and, when given,
    /// the reduction schemes of `reductionSchemes` (a CUBLASLT_REDUCTION_SCHEME mask). `problem` names the GEMM in
    /// the error thrown when there is none.
    func heuristicAlgorithms(_ handle: cublasLtHandle_t, count: Int, reductionSchemes: UInt32? = nil,
                             problem: String) throws -> [cublasLtMatmulAlgo_t] {
        var preference: cublasLtMatmulPreference_t?
        try CublasLtGemm.check(lt, lt.cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate")
        defer { _ = lt.cublasLtMatmulPreferenceDestroy(preference!) }
        var workspaceLimit = UInt64(CublasLtGemm.workspaceBytes)
        try CublasLtGemm.check(lt, lt.cublasLtMatmulPreferenceSetAttribute(
            preference!, Int32(CCUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES), &workspaceLimit, 8), "cublasLtMatmulPreferenceSetAttribute")
        if var schemes = reductionSchemes {
            try CublasLtGemm.check(lt, lt.cublasLtMatmulPreferenceSetAttribute(
                preference!, Int32(CCUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK), &schemes, 4), "cublasLtMatmulPreferenceSetAttribute")
        }
        var results = [cublasLtMatmulHeuristicResult_t](repeating: cublasLtMatmulHeuristicResult_t(), count: count)
        var returned: Int32 = 0
        try CublasLtGemm.check(lt, lt.cublasLtMatmulAlgoGetHeuristic(handle, descriptor, layoutA, layoutB, layoutD, layoutD,
                                                                      preference!, Int32(count), &results, &returned),
                               "cublasLtMatmulAlgoGetHeuristic")
        guard returned > 0 else {
            throw CUDAError.cublas(call: "cublasLtMatmulAlgoGetHeuristic", status: 15,
                                   message: "no algorithm for \(problem) (unsupported type/epilogue/alignment combination)")
        }
        let usable = results.prefix(Int(returned)).filter { $0.state == 0 }.map(\.algo)
        guard !usable.isEmpty else {
            throw CUDAError.cublas(call: "cublasLtMatmulAlgoGetHeuristic", status: results[0].state,
                                   message: "no usable algorithm for \(problem)")
        }
        return usable
    }

    /// Enqueues D = alpha · op(A) · op(B) + beta · D with `algorithm` on `stream`; `a`, `b` and `d` are our
    /// row-major operands' device addresses (cuBLASLt's B, A and D).
    func enqueue(_ handle: cublasLtHandle_t, _ algorithm: cublasLtMatmulAlgo_t, a: UInt64, b: UInt64, d: UInt64,
                 alpha: Float, beta: Float, workspace: UInt64, stream: CUDAStream) -> cublasStatus_t {
        var alpha = alpha, beta = beta, algorithm = algorithm
        return lt.cublasLtMatmul(handle, descriptor, &alpha,
                                 UnsafeRawPointer(bitPattern: UInt(b))!, layoutA,
                                 UnsafeRawPointer(bitPattern: UInt(a))!, layoutB,
                                 &beta, UnsafeRawPointer(bitPattern: UInt(d)), layoutD,
                                 UnsafeMutableRawPointer(bitPattern: UInt(d))!, layoutD,
                                 &algorithm, UnsafeMutableRawPointer(bitPattern: UInt(workspace)),
                                 CublasLtGemm.workspaceBytes, stream.handle)
    }
}
