import Foundation
import MegatronCUDA

/// Everything tensors on one GPU share: the device, its default stream (all ops on `.cuda(i)` are
/// enqueued there, in program order, so no op needs to synchronize), the caching allocator their
/// storage comes from, pinned staging for host copies, the kernel catalog and the GEMM handle.
///
/// Created on first use of `.cuda(i)`; ask for one explicitly to get a thrown error instead of a
/// trap when there is no GPU:
///
///     let context = try CUDAContext.shared(ordinal: 0)      // or: try Device.localCUDA()
///     let x = Tensor(shape: [2, 2], values: [1, 2, 3, 4]).to(.cuda(0))
///     print(Ops.matmul(x, x).floats())                      // the only host sync: reading values
public final class CUDAContext: @unchecked Sendable {
    public let device: CUDADevice
    public let stream: CUDAStream
    public let allocator: CachingAllocator
    public let staging: PinnedStaging
    /// The kernel catalog: every launch of every op on this GPU goes through it. Its programs start
    /// compiling in the background when the context is made (`KernelLoading`).
    public let kernels: CUDAKernels
    /// The copies between host memory and this GPU so far (`HostCopyCounter`).
    public let hostCopies = HostCopyCounter()
    /// True when MEGATRON_DETERMINISTIC=1: kernels that have an order-dependent fast variant
    /// (atomic scatter-add) take their ordered, run-to-run identical one instead.
    public let deterministic: Bool
    /// Per-op timings (MEGATRON_PROFILE=1, `OpProfile`) or the idle-gap timeline (MEGATRON_PROFILE=timeline,
    /// `OpTimeline`); nil otherwise, at no cost.
    public let profile: (any OpProfiler)?
    /// Which flash attention runs (MEGATRON_ATTENTION): cuDNN's fused SDPA where it loads, or our kernels.
    public let attentionBackend: AttentionBackend
    /// Whether bf16 GEMMs may reduce split-K partial sums in bf16: not when MEGATRON_BF16_REDUCED_PRECISION_REDUCTION=0
    /// (`--disable-bf16-reduced-precision-matmul`, torch's `allow_bf16_reduced_precision_reduction = False`).
    public let gemmReductionPrecision: GemmReductionPrecision
    private let lazyLock = NSLock()
    private var gemmHandle: CublasLtGemm?
    private var fp8GemmHandle: CublasLtFP8Gemm?
    private var groupedGemmHandle: GroupedGemm?
    private var cudnnAttentionHandle: Result<CuDNNAttention, Error>?

    init(ordinal: Int, environment: [String: String]) throws {
        device = try CUDADevice(ordinal: ordinal)
        stream = try CUDAStream(device: device)
        allocator = CachingAllocator(source: DriverMemorySource(device: device))
        staging = PinnedStaging(device: device)
        kernels = try CUDAKernels(device: device)
        deterministic = environment["MEGATRON_DETERMINISTIC"] == "1"
        gemmReductionPrecision = Self.gemmReductionPrecision(environment: environment)
        profile = makeOpProfiler(environment["MEGATRON_PROFILE"], device: device)
        attentionBackend = try AttentionBackend(environment: environment)
    }

    /// Runs one op's enqueueing `body`, trapping with the op's label on a CUDA error; when profiling,
    /// the profiler observes it under its label.
    func run<R>(_ label: @autoclosure () -> String, _ body: () throws -> R) -> R {
        guard let profile else { return cudaCheck(label(), body) }
        let text = label()
        return profile.measure(text, stream: stream) { cudaCheck(text, body) }
    }

    /// cuBLASLt, opened on the first matmul (a process that never multiplies needs no cuBLASLt).
    public func gemm() throws -> CublasLtGemm {
        lazyLock.lock()
        defer { lazyLock.unlock() }
        if let gemmHandle { return gemmHandle }
        let made = try CublasLtGemm(device: device, allocator: allocator, reductionPrecision: gemmReductionPrecision)
        gemmHandle = made
        return made
    }

    /// The side streams grouped GEMMs (an MoE layer's experts) run on, made on the first grouped GEMM.
    public func groupedGemm() throws -> GroupedGemm {
        lazyLock.lock()
        defer { lazyLock.unlock() }
        if let groupedGemmHandle { return groupedGemmHandle }
        let made = try GroupedGemm(device: device, streams: Self.groupedGemmStreams)
        groupedGemmHandle = made
        return made
    }

    /// Side streams of a grouped GEMM (Transformer Engine's default number of GEMM streams).
    static let groupedGemmStreams = 4

    /// cuBLASLt's FP8 GEMMs, opened on the first FP8 product.
    public func fp8Gemm() throws -> CublasLtFP8Gemm {
        lazyLock.lock()
        defer { lazyLock.unlock() }
        if let fp8GemmHandle { return fp8GemmHandle }
        let made = try CublasLtFP8Gemm(device: device, allocator: allocator)
        fp8GemmHandle = made
        return made
    }

    /// The variable `--disable-bf16-reduced-precision-matmul` sets to 0.
    public static let bf16ReducedPrecisionReductionVariable = "MEGATRON_BF16_REDUCED_PRECISION_REDUCTION"

    /// The GEMM reduction precision an environment asks for (allowed unless the variable is 0).
    public static func gemmReductionPrecision(environment: [String: String]) -> GemmReductionPrecision {
        environment[bf16ReducedPrecisionReductionVariable] == "0" ? .fp32PartialSums : .reducedAllowed
    }

    /// cuDNN's fused attention, opened on first use; throws `CUDAError.libraryUnavailable` naming what
    /// to install (or MEGATRON_CUDNN_PATH) when cuDNN 9 cannot be loaded.
    public func cudnnAttention() throws -> CuDNNAttention {
        lazyLock.lock()
        defer { lazyLock.unlock() }
        if let cudnnAttentionHandle { return try cudnnAttentionHandle.get() }
        // A deterministic run keeps the heuristic's first engine: timing could pick another one run to run.
        let made = Result { try CuDNNAttention(device: device, allocator: allocator, tunedCandidates: deterministic ? 1 : nil) }
        cudnnAttentionHandle = made
        return try made.get()
    }

    /// cuDNN's fused attention, or nil when it is not `required` and cannot be had: no libcudnn.so.9
    /// (silently), or a cuDNN that fails to start (said once on stderr). The attempt is made once.
    public func cudnnAttention(required: Bool) throws -> CuDNNAttention? {
        lazyLock.lock()
        let firstAttempt = cudnnAttentionHandle == nil
        lazyLock.unlock()
        do {
            return try cudnnAttention()
        } catch {
            if required { throw error }
            if firstAttempt, !(error is CUDAError) {
                FileHandle.standardError.write(Data("note: cuDNN attention unavailable, using our kernels: \(error)\n".utf8))
            }
            return nil
        }
    }

    /// Waits until every op enqueued on this device has finished (timing, tests).
    public func synchronize() throws { try stream.synchronize() }

    // One registry per process, because a device's context is a process-wide fact: every tensor on
    // `.cuda(i)` must share one stream (ordering is what makes the eager ops correct without
    // synchronization) and one allocator (a block freed by one tensor is reused by the next). A
    // `Device` value is a plain enum that cannot carry the context, so the ops find it here. The
    // registry only grows, each entry is made once under the lock, and nothing else is global.
    private static let registry = Registry()

    private final class Registry: @unchecked Sendable {
        let lock = NSLock()
        var contexts: [Int: Result<CUDAContext, Error>] = [:]
    }

    /// The context of device `ordinal`, created on first use. Throws the CUDA layer's error (no
    /// driver, no such device, NVRTC missing, ...) naming what is missing; the first failure is kept.
    /// `environment` (default: the process's) is read only when the context is created; every op
    /// looks its context up here, so the lookup must not copy the environment each time.
    public static func shared(ordinal: Int, environment: [String: String]? = nil) throws -> CUDAContext {
        registry.lock.lock()
        defer { registry.lock.unlock() }
        if let existing = registry.contexts[ordinal] { return try existing.get() }
        let made = Result { try CUDAContext(ordinal: ordinal, environment: environment ?? ProcessInfo.processInfo.environment) }
        registry.contexts[ordinal] = made
        return try made.get()
    }

    /// The context of `device`; the non-throwing tensor API (`Tensor(zeros:device:)`, ops) goes through
    /// here. When it cannot be made the process ends with the CUDA layer's message (entry points make the
    /// context with `shared(ordinal:)` first, so a missing GPU is a thrown error there).
    static func of(_ device: Device) -> CUDAContext {
        guard case .cuda(let ordinal) = device else { preconditionFailure("\(device) is not a CUDA device") }
        do {
            return try shared(ordinal: ordinal)
        } catch {
            exitWithError("cannot use \(device): \(error)")
        }
    }

    /// Whether a CUDA device with this ordinal can be used (driver, device, NVRTC all present).
    public static func isAvailable(ordinal: Int = 0) -> Bool {
        (try? shared(ordinal: ordinal)) != nil
    }
}

extension Device {
    /// The GPU this process should use: `.cuda(LOCAL_RANK)` (one process per GPU under torchrun-style
    /// launchers), else `.cuda(0)`; its context is created here, so a missing GPU or driver throws.
    public static func localCUDA(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Device {
        let ordinal = try CUDADevice.ordinal(index: nil, environment: environment)
        _ = try CUDAContext.shared(ordinal: ordinal, environment: environment)
        return .cuda(ordinal)
    }
}

/// Ends the process with a message naming the op when a CUDA-layer error (a kernel launch, the driver,
/// cuBLASLt, device memory exhausted) happens inside a non-throwing op; printed in release builds too.
@inline(__always)
func cudaCheck<R>(_ op: @autoclosure () -> String, _ body: () throws -> R) -> R {
    do {
        return try body()
    } catch {
        exitWithError(cudaFailureMessage(op(), error))
    }
}

/// What `cudaCheck` prints: an out-of-memory report as it is (it names the request and what to change),
/// any other error after the op it stopped.
func cudaFailureMessage(_ op: String, _ error: Error) -> String {
    if case .outOfMemory(let report)? = error as? CUDAError { return report }
    return "\(op) on CUDA failed: \(error)"
}
