import CCUDA
import Foundation

/// GEMMs through cuBLASLt over raw device pointers: bf16/fp16 (or fp32) inputs, fp32 accumulation
/// (CUBLAS_COMPUTE_32F), fp32/bf16/fp16 outputs, row-major semantics, strided batches and fused
/// bias/GELU epilogues. The algorithm for each distinct problem is chosen once by cuBLASLt's
/// heuristic and cached with its descriptors; each stream gets a 32 MiB workspace.
///
///     let gemm = try CublasLtGemm(device: device, allocator: allocator)
///     // Y[T,out] = X[T,in]·W[out,in]ᵀ + b
///     let problem = GemmProblem(m: T, n: out, k: inF, transposeB: true, epilogue: .bias)
///     try gemm.run(problem, a: x, b: w, d: y, bias: b, stream: stream)
public final class CublasLtGemm {
    public static let workspaceBytes = 32 << 20
    static let autotuneCandidates = 8
    static let autotuneRounds = 3
    static let autotuneBurstMilliseconds = 5.0
    static let autotuneWarmupMilliseconds = 50.0

    /// Whether the first call of each problem times the heuristic's top candidates on its own
    /// operands and keeps the fastest, instead of taking the heuristic's first choice. That first
    /// call synchronizes its stream; later calls of the problem do not.
    public let autotune: Bool
    /// Whether bf16 GEMMs may reduce split-K partial sums in bf16 (`--disable-bf16-reduced-precision-matmul`).
    public let reductionPrecision: GemmReductionPrecision

    public let device: CUDADevice
    private let lt: CCUDACublasLt
    private let handle: cublasLtHandle_t
    private let allocator: CachingAllocator
    private let lock = NSLock()
    private var plans: [PlanKey: GemmPlan] = [:]
    private var workspaces: [UInt: DeviceAllocation] = [:]

    public init(device: CUDADevice, allocator: CachingAllocator, autotune: Bool = false,
                reductionPrecision: GemmReductionPrecision = .reducedAllowed) throws {
        let lt = try CUDALibraries.cublasLt()
        try device.makeCurrent()
        var handle: cublasLtHandle_t?
        try Self.check(lt, lt.cublasLtCreate(&handle), "cublasLtCreate")
        self.device = device
        self.lt = lt
        self.handle = handle!
        self.allocator = allocator
        self.autotune = autotune
        self.reductionPrecision = reductionPrecision
    }

    deinit {
        plans.removeAll()
        for workspace in workspaces.values { allocator.free(workspace) }
        _ = lt.cublasLtDestroy(handle)
    }

    /// cuBLASLt's version number (e.g. 130100 for 13.1.0).
    public var version: Int { lt.cublasLtGetVersion() }

    /// Number of distinct problems planned so far (each ran the heuristic once).
    public var cachedPlanCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return plans.count
    }

    /// Enqueues D = alpha·op(A)·op(B) + beta·D with `problem`'s epilogue on `stream`.
    /// `bias` is the bias (or bias-gradient output) and `aux` the GELU aux matrix, for the
    /// epilogues that use them. With beta != 0, D's old contents are accumulated into.
    public func run(_ problem: GemmProblem, a: UInt64, b: UInt64, d: UInt64, alpha: Float = 1, beta: Float = 0,
                    bias: UInt64 = 0, aux: UInt64 = 0, stream: CUDAStream) throws {
        try problem.validate()
        if problem.epilogue.usesBiasPointer, bias == 0 {
            throw CUDAError.invalidArgument("GEMM epilogue \(problem.epilogue) needs a bias pointer")
        }
        if problem.epilogue.usesAux, aux == 0 {
            throw CUDAError.invalidArgument("GEMM epilogue \(problem.epilogue) needs an aux pointer")
        }
        try device.makeCurrent()
        lock.lock()
        defer { lock.unlock() }
        let key = PlanKey(problem: problem, alignment: Self.alignment(of: [a, b, d, bias, aux]), accumulate: beta != 0)
        let operands = Operands(a: a, b: b, d: d, workspace: try workspace(for: stream).address, stream: stream)
        let plan = try plans[key] ?? makePlan(key, operands, bias: bias, aux: aux)
        plans[key] = plan
        try plan.setPointers(bias: bias, aux: aux)
        try Self.check(lt, enqueue(plan, plan.algorithm, operands, alpha: alpha, beta: beta),
                       "cublasLtMatmul(\(problem.m)x\(problem.n)x\(problem.k))")
    }

    /// Pointers of one call, and where it runs.
    private struct Operands {
        var a: UInt64, b: UInt64, d: UInt64, workspace: UInt64
        var stream: CUDAStream
    }

    /// One call of the plan: cuBLASLt's A is our B and its B our A (see ColumnMajorGemm); C is D, for accumulation.
    private func enqueue(_ plan: GemmPlan, _ algorithm: cublasLtMatmulAlgo_t, _ o: Operands,
                         alpha: Float, beta: Float) -> cublasStatus_t {
        plan.enqueue(handle, algorithm, a: o.a, b: o.b, d: o.d, alpha: alpha, beta: beta, workspace: o.workspace, stream: o.stream)
    }

    private func workspace(for stream: CUDAStream) throws -> DeviceAllocation {
        if let existing = workspaces[stream.allocatorKey] { return existing }
        let allocation = try allocator.allocate(bytes: Self.workspaceBytes, stream: stream.allocatorKey)
        workspaces[stream.allocatorKey] = allocation
        return allocation
    }

    private func makePlan(_ key: PlanKey, _ operands: Operands, bias: UInt64, aux: UInt64) throws -> GemmPlan {
        let plan = try GemmPlan(lt: lt, problem: key.problem)
        try plan.setPointers(bias: bias, aux: aux)   // heuristics look at their alignment
        let candidates = try heuristicAlgorithms(plan, count: autotune ? Self.autotuneCandidates : 1)
        // Timing candidates overwrites D, so an accumulating call keeps the heuristic's first choice.
        if autotune, !key.accumulate, candidates.count > 1 {
            plan.algorithm = try fastest(candidates, plan, operands)
        } else {
            plan.algorithm = candidates[0]
        }
        return plan
    }

    /// The heuristic's best `count` algorithms for the plan, best first.
    private func heuristicAlgorithms(_ plan: GemmPlan, count: Int) throws -> [cublasLtMatmulAlgo_t] {
        try plan.heuristicAlgorithms(handle, count: count, reductionSchemes: reductionPrecision.reductionSchemeMask(for: plan.problem),
                                     problem: "\(plan.problem)")
    }

    /// Times each candidate on the call's own operands and returns the fastest; candidates that
    /// fail to launch are skipped. Candidates are timed round-robin, each round a burst of
    /// back-to-back runs (the way training issues them), and each keeps its best round, so clock
    /// drift during tuning does not favour whoever ran last. Another candidate replaces the
    /// heuristic's first choice only when at least 1% faster. Runs once per plan, like cuDNN's
    /// benchmark mode, and synchronizes the stream.
    private func fastest(_ candidates: [cublasLtMatmulAlgo_t], _ plan: GemmPlan, _ o: Operands) throws -> cublasLtMatmulAlgo_t {
        let start = try CUDAEvent(device: device), end = try CUDAEvent(device: device)
        let usable = candidates.filter { enqueue(plan, $0, o, alpha: 1, beta: 0) == 0 }
        guard let first = usable.first else { return candidates[0] }
        func burst(_ algorithm: cublasLtMatmulAlgo_t, runs: Int) throws -> Double {
            try start.record(on: o.stream)
            for _ in 0..<runs { _ = enqueue(plan, algorithm, o, alpha: 1, beta: 0) }
            try end.record(on: o.stream)
            try end.synchronize()
            return try end.elapsedMilliseconds(since: start)
        }
        // Size bursts by the problem: long enough that clocks settle under load, as in training.
        let single = max(try burst(first, runs: 1), 1e-3)
        _ = try burst(first, runs: Int((Self.autotuneWarmupMilliseconds / single).rounded(.up)))
        let runs = max(3, Int((Self.autotuneBurstMilliseconds / single).rounded(.up)))
        var best = [Double](repeating: .infinity, count: usable.count)
        for _ in 0..<Self.autotuneRounds {
            for (index, candidate) in usable.enumerated() {
                best[index] = min(best[index], try burst(candidate, runs: runs))
            }
        }
        let winner = best.indices.min { best[$0] < best[$1] }!
        return best[winner] < 0.99 * best[0] ? usable[winner] : first
    }

    /// Largest power of two up to 256 dividing every non-null pointer: heuristics and kernels
    /// depend on it, so plans are keyed by it.
    static func alignment(of pointers: [UInt64]) -> Int {
        pointers.filter { $0 != 0 }.map { min(256, 1 << $0.trailingZeroBitCount) }.min() ?? 256
    }

    static func check(_ lt: CCUDACublasLt, _ status: cublasStatus_t, _ call: String) throws {
        guard status != 0 else { return }
        let message = lt.cublasLtGetStatusString.map { String(cString: $0(status)) } ?? "cuBLAS status \(status)"
        throw CUDAError.cublas(call: call, status: status, message: message)
    }
}

private struct PlanKey: Hashable {
    var problem: GemmProblem
    var alignment: Int
    var accumulate: Bool
}

/// Descriptors and the chosen algorithm of one problem, with its epilogue's attributes; destroyed with the cache entry.
private final class GemmPlan: CublasLtMatmulPlan {
    let problem: GemmProblem

    init(lt: CCUDACublasLt, problem: GemmProblem) throws {
        self.problem = problem
        let view = ColumnMajorGemm(problem)
        func layout(_ l: ColumnMajorGemm.Layout, _ type: GemmDataType) -> Layout {
            Layout(type: type.cudaDataType, rows: l.rows, cols: l.cols, ld: l.ld, batchCount: problem.batchCount, batchStride: l.batchStride)
        }
        try super.init(lt: lt, a: layout(view.a, problem.inputType), b: layout(view.b, problem.inputType),
                       d: layout(view.d, problem.outputType), transA: view.transA, transB: view.transB)
        var epilogue = problem.epilogue.cublasValue
        try set(CCUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, "epilogue")
        if problem.epilogue.usesAux {
            var ld = Int64(problem.effectiveAuxLd)
            try set(CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, "aux ld")
            if problem.batchCount > 1 {
                var stride = Int64(problem.effectiveAuxLd * problem.m)
                try set(CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, &stride, "aux batch stride")
            }
        }
    }

    func setPointers(bias: UInt64, aux: UInt64) throws {
        if problem.epilogue.usesBiasPointer {
            var pointer = bias
            try set(CCUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, "bias pointer")
        }
        if problem.epilogue.usesAux {
            var pointer = aux
            try set(CCUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &pointer, "aux pointer")
        }
    }
}
