import CCUDA

/// Element types of GEMM operands.
public enum GemmDataType: String, Hashable, Sendable {
    case float32, bfloat16, float16

    var cudaDataType: Int32 {
        switch self {
        case .float32: return Int32(CCUDA_R_32F)
        case .bfloat16: return Int32(CCUDA_R_16BF)
        case .float16: return Int32(CCUDA_R_16F)
        }
    }

    public var byteCount: Int { self == .float32 ? 4 : 2 }
}

/// What cuBLASLt does to the product before it is stored, in row-major terms.
public enum GemmEpilogueKind: Hashable, Sendable {
    /// D = A·B (+ beta·C).
    case none
    /// D = A·B + bias; bias has N elements (one per output column), of the output type.
    case bias
    /// D = gelu(A·B) (tanh approximation).
    case gelu
    /// D = gelu(A·B + bias).
    case biasGelu
    /// D = gelu(A·B [+ bias]) and aux = the GELU input (the pre-activation, kept for backward).
    case geluAux(withBias: Bool)
    /// D = (A·B) ⊙ gelu'(aux): the backward of `geluAux`, with aux the saved pre-activation;
    /// with `biasGradient`, also writes Σ over rows of D (N elements) to the bias-gradient pointer.
    case dgelu(biasGradient: Bool)
    /// D = A·B and the bias gradient Σ_k op(A)[m, k] (M elements) — for wgrad dW = dYᵀ·X this is
    /// db = Σ_tokens dY. Maps to cuBLASLt's BGRADB (A and B swap in the column-major view).
    case biasGradientFromA

    var cublasValue: UInt32 {
        switch self {
        case .none: return UInt32(CCUBLASLT_EPILOGUE_DEFAULT)
        case .bias: return UInt32(CCUBLASLT_EPILOGUE_BIAS)
        case .gelu: return UInt32(CCUBLASLT_EPILOGUE_GELU)
        case .biasGelu: return UInt32(CCUBLASLT_EPILOGUE_GELU_BIAS)
        case .geluAux(let withBias): return UInt32(withBias ? CCUBLASLT_EPILOGUE_GELU_AUX_BIAS : CCUBLASLT_EPILOGUE_GELU_AUX)
        case .dgelu(let biasGradient): return UInt32(biasGradient ? CCUBLASLT_EPILOGUE_DGELU_BGRAD : CCUBLASLT_EPILOGUE_DGELU)
        case .biasGradientFromA: return UInt32(CCUBLASLT_EPILOGUE_BGRADB)
        }
    }

    var usesBiasPointer: Bool {
        switch self {
        case .bias, .biasGelu, .geluAux(withBias: true), .dgelu(biasGradient: true), .biasGradientFromA: return true
        default: return false
        }
    }

    var usesAux: Bool {
        switch self {
        case .geluAux, .dgelu: return true
        default: return false
        }
    }
}

/// A batched GEMM in row-major terms: for each batch b, D[b] = alpha·op(A[b])·op(B[b]) + beta·C[b],
/// op(A) is M×K, op(B) is K×N, D is M×N; `transposeA` means A is stored K×M (row-major), and so on.
/// Leading dimensions are row strides in elements (0 = packed); batch strides are in elements
/// (0 = packed matrices one after another).
///
///     // Linear forward Y[T,out] = X[T,in] · W[out,in]ᵀ
///     let forward = GemmProblem(m: tokens, n: out, k: inFeatures, transposeB: true)
public struct GemmProblem: Hashable, Sendable {
    public var m: Int, n: Int, k: Int
    public var transposeA = false
    public var transposeB = false
    public var inputType = GemmDataType.bfloat16
    public var outputType = GemmDataType.bfloat16
    public var batchCount = 1
    public var lda = 0, ldb = 0, ldd = 0
    public var strideA = 0, strideB = 0, strideD = 0
    public var epilogue = GemmEpilogueKind.none
    /// Row stride of the aux matrix (pre-GELU values, M×N) for `geluAux`/`dgelu`; 0 = N.
    public var auxLeadingDimension = 0

    public init(m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false,
                inputType: GemmDataType = .bfloat16, outputType: GemmDataType = .bfloat16,
                batchCount: Int = 1, epilogue: GemmEpilogueKind = .none) {
        (self.m, self.n, self.k) = (m, n, k)
        (self.transposeA, self.transposeB) = (transposeA, transposeB)
        (self.inputType, self.outputType, self.batchCount, self.epilogue) = (inputType, outputType, batchCount, epilogue)
    }

    /// Row-major shape of A and B as stored.
    var storedA: (rows: Int, cols: Int) { transposeA ? (k, m) : (m, k) }
    var storedB: (rows: Int, cols: Int) { transposeB ? (n, k) : (k, n) }
    var effectiveLda: Int { lda == 0 ? storedA.cols : lda }
    var effectiveLdb: Int { ldb == 0 ? storedB.cols : ldb }
    var effectiveLdd: Int { ldd == 0 ? n : ldd }
    var effectiveStrideA: Int { strideA == 0 ? storedA.rows * effectiveLda : strideA }
    var effectiveStrideB: Int { strideB == 0 ? storedB.rows * effectiveLdb : strideB }
    var effectiveStrideD: Int { strideD == 0 ? m * effectiveLdd : strideD }
    var effectiveAuxLd: Int { auxLeadingDimension == 0 ? n : auxLeadingDimension }

    /// Floating-point operations of the whole batch (2·M·N·K each).
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(batchCount) }

    /// Checks shapes and strides; messages say which value is wrong and why.
    func validate() throws {
        func fail(_ message: String) -> CUDAError { .invalidArgument("GEMM \(m)x\(n)x\(k): \(message)") }
        guard m > 0, n > 0, k > 0, batchCount > 0 else { throw fail("sizes and batch count must be positive") }
        // fp32 inputs run as a plain SGEMM (CUBLAS_COMPUTE_32F, no TF32), which cuBLASLt supports for fp32 output only.
        guard inputType != .float32 || outputType == .float32 else { throw fail("fp32 inputs need an fp32 output") }
        guard effectiveLda >= storedA.cols else { throw fail("lda \(lda) < \(storedA.cols) columns of A") }
        guard effectiveLdb >= storedB.cols else { throw fail("ldb \(ldb) < \(storedB.cols) columns of B") }
        guard effectiveLdd >= n else { throw fail("ldd \(ldd) < N = \(n)") }
        if epilogue.usesAux {
            guard effectiveAuxLd >= n, effectiveAuxLd % 8 == 0 else {
                throw fail("the GELU aux row stride (\(effectiveAuxLd)) must be >= N and a multiple of 8")
            }
        }
    }
}

/// The same GEMM seen column-major, as cuBLASLt computes it. A row-major matrix is the transpose
/// of a column-major one over the same memory, so Dᵀ = op(B)ᵀ·op(A)ᵀ: cuBLASLt's "A" is our B,
/// its "B" is our A, its m is our N and its n is our M; transposes and leading dimensions carry over.
struct ColumnMajorGemm: Equatable {
    struct Layout: Equatable {
        var rows: Int, cols: Int, ld: Int, batchStride: Int
    }
    var transA: Bool, transB: Bool   // cuBLASLt's opA / opB
    var a: Layout, b: Layout, d: Layout
    var m: Int, n: Int, k: Int

    init(_ p: GemmProblem) {
        // Column-major view of our B (stored row-major rows×cols) is cols×rows with ld = row stride.
        a = Layout(rows: p.storedB.cols, cols: p.storedB.rows, ld: p.effectiveLdb, batchStride: p.effectiveStrideB)
        b = Layout(rows: p.storedA.cols, cols: p.storedA.rows, ld: p.effectiveLda, batchStride: p.effectiveStrideA)
        d = Layout(rows: p.n, cols: p.m, ld: p.effectiveLdd, batchStride: p.effectiveStrideD)
        transA = p.transposeB
        transB = p.transposeA
        (m, n, k) = (p.n, p.m, p.k)
    }
}
