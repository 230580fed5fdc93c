import CCUDA
import Foundation

/// One FP8 GEMM in row-major terms, D[M, N] = scaleA · scaleB · (A[M, K] · B[N, K]ᵀ): both operands fp8 with
/// K innermost (the "TN" layout cuBLASLt's FP8 kernels take on Hopper), fp32 accumulation, a bf16 / fp16 /
/// fp32 result. e5m2 × e5m2 has no kernel (cuBLASLt), so at least one operand is e4m3.
public struct FP8GemmProblem: Hashable, Sendable {
    public var m: Int, n: Int, k: Int
    public var aFormat: FP8Format, bFormat: FP8Format
    public var outputType: GemmDataType
    /// cuBLASLt's fast accumulation (partial sums kept in the tensor cores' narrower accumulator between
    /// promotions): what Transformer Engine uses for forward GEMMs, not for dgrad / wgrad.
    public var fastAccumulation: Bool

    public init(m: Int, n: Int, k: Int, aFormat: FP8Format, bFormat: FP8Format, outputType: GemmDataType,
                fastAccumulation: Bool = false) {
        (self.m, self.n, self.k) = (m, n, k)
        (self.aFormat, self.bFormat, self.outputType, self.fastAccumulation) = (aFormat, bFormat, outputType, fastAccumulation)
    }

    /// Shapes cuBLASLt's FP8 kernels accept: K a multiple of 16 (16-byte rows of fp8), N a multiple of 8
    /// (16-byte rows of the result), not both operands e5m2.
    func validate() throws {
        func fail(_ message: String) -> CUDAError { .invalidArgument("FP8 GEMM \(m)x\(n)x\(k): \(message)") }
        guard m > 0, n > 0, k > 0 else { throw fail("sizes must be positive") }
        guard k % 16 == 0 else { throw fail("K must be a multiple of 16 for cuBLASLt's FP8 kernels") }
        guard n % 8 == 0 else { throw fail("N must be a multiple of 8 for cuBLASLt's FP8 kernels") }
        guard aFormat == .e4m3 || bFormat == .e4m3 else { throw fail("e5m2 x e5m2 has no cuBLASLt kernel") }
    }
}

/// FP8 GEMMs through cuBLASLt with per-tensor scales read on the device (CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER):
/// the scale inverses of the quantized operands, so no host sync. One plan per problem, chosen by the heuristic.
///
///     let fp8 = try CublasLtFP8Gemm(device: device, allocator: allocator)
///     // Y[T, out] = X[T, in] · W[out, in]ᵀ from e4m3 X and W
///     let problem = FP8GemmProblem(m: T, n: out, k: inF, aFormat: .e4m3, bFormat: .e4m3, outputType: .bfloat16)
///     try fp8.run(problem, a: qx, aScaleInverse: sx, b: qw, bScaleInverse: sw, d: y, stream: stream)
public final class CublasLtFP8Gemm {
    public let device: CUDADevice
    private let lt: CCUDACublasLt
    private let handle: cublasLtHandle_t
    private let allocator: CachingAllocator
    private let lock = NSLock()
    private var plans: [FP8GemmProblem: FP8GemmPlan] = [:]
    private var workspaces: [UInt: DeviceAllocation] = [:]

    public init(device: CUDADevice, allocator: CachingAllocator) throws {
        let lt = try CUDALibraries.cublasLt()
        try device.makeCurrent()
        var handle: cublasLtHandle_t?
        try CublasLtGemm.check(lt, lt.cublasLtCreate(&handle), "cublasLtCreate")
        (self.device, self.lt, self.handle, self.allocator) = (device, lt, handle!, allocator)
    }

    deinit {
        plans.removeAll()
        for workspace in workspaces.values { allocator.free(workspace) }
        _ = lt.cublasLtDestroy(handle)
    }

    /// Enqueues D = (*aScaleInverse) · (*bScaleInverse) · A · Bᵀ on `stream`; every pointer is a device address.
    public func run(_ problem: FP8GemmProblem, a: UInt64, aScaleInverse: UInt64, b: UInt64, bScaleInverse: UInt64,
                    d: UInt64, stream: CUDAStream) throws {
        try problem.validate()
        for (name, pointer) in [("A", a), ("B", b), ("D", d)] where pointer % 16 != 0 {
            throw CUDAError.invalidArgument("FP8 GEMM: \(name) must be 16-byte aligned")
        }
        try device.makeCurrent()
        lock.lock()
        defer { lock.unlock() }
        let workspace = try self.workspace(for: stream)
        let plan = try plans[problem] ?? FP8GemmPlan(lt: lt, handle: handle, problem: problem)
        plans[problem] = plan
        // cuBLASLt's column-major view: its A is our B (op T), its B our A (op N), D transposed.
        try plan.setScales(cublasA: bScaleInverse, cublasB: aScaleInverse)
        let status = plan.enqueue(handle, plan.algorithm, a: a, b: b, d: d, alpha: 1, beta: 0, workspace: workspace.address,
                                  stream: stream)
        try CublasLtGemm.check(lt, status, "cublasLtMatmul(fp8 \(problem.m)x\(problem.n)x\(problem.k))")
    }

    private func workspace(for stream: CUDAStream) throws -> DeviceAllocation {
        if let existing = workspaces[stream.allocatorKey] { return existing }
        let allocation = try allocator.allocate(bytes: CublasLtGemm.workspaceBytes, stream: stream.allocatorKey)
        workspaces[stream.allocatorKey] = allocation
        return allocation
    }
}

/// cuBLASLt's enumerations an FP8 GEMM needs beyond CublasLtGemm's (cublasLt.h, library_types.h).
enum FP8CublasConstants {
    static let dataTypeE4M3: Int32 = 28        // CUDA_R_8F_E4M3
    static let dataTypeE5M2: Int32 = 29        // CUDA_R_8F_E5M2
    static let aScalePointer = 17              // CUBLASLT_MATMUL_DESC_A_SCALE_POINTER
    static let bScalePointer = 18              // CUBLASLT_MATMUL_DESC_B_SCALE_POINTER
    static let fastAccumulation = 25           // CUBLASLT_MATMUL_DESC_FAST_ACCUM

    static func dataType(_ format: FP8Format) -> Int32 { format == .e4m3 ? dataTypeE4M3 : dataTypeE5M2 }
}

/// Descriptors and the heuristic's algorithm of one FP8 problem; the scale pointers are set per call.
private final class FP8GemmPlan: CublasLtMatmulPlan {
    init(lt: CCUDACublasLt, handle: cublasLtHandle_t, problem p: FP8GemmProblem) throws {
        // Column-major: A' = our B stored K x N (ld K), B' = our A stored K x M (ld K), D' = N x M (ld N).
        try super.init(lt: lt, a: Layout(type: FP8CublasConstants.dataType(p.bFormat), rows: p.k, cols: p.n, ld: p.k),
                       b: Layout(type: FP8CublasConstants.dataType(p.aFormat), rows: p.k, cols: p.m, ld: p.k),
                       d: Layout(type: p.outputType.cudaDataType, rows: p.n, cols: p.m, ld: p.n), transA: true, transB: false)
        var fast: Int8 = p.fastAccumulation ? 1 : 0
        try set(FP8CublasConstants.fastAccumulation, &fast, "fast accumulation")
        algorithm = try heuristicAlgorithms(handle, count: 1, problem: "FP8 \(p) (FP8 GEMMs need Hopper or Ada, sm_89 or newer)")[0]
    }

    func setScales(cublasA: UInt64, cublasB: UInt64) throws {
        var a = cublasA, b = cublasB
        try set(FP8CublasConstants.aScalePointer, &a, "A scale pointer")
        try set(FP8CublasConstants.bScalePointer, &b, "B scale pointer")
    }
}
