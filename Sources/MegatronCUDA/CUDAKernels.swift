import Foundation

/// Element types the kernels handle: the buffer kernels (fill, uniform, axpby) have fp32 and bf16
/// versions, the neural-network kernels all three.
public enum KernelElementType: String, Sendable, CaseIterable {
    case float32 = "f32"
    case bfloat16 = "bf16"
    case float16 = "f16"

    public var byteCount: Int { self == .float32 ? 4 : 2 }
}

/// How long loading the kernels took, and whether NVRTC ran or the disk cache served them.
public struct KernelLoadReport: Sendable {
    public var milliseconds: Double
    public var compiledCount: Int
    public var cachedCount: Int
}

/// The one catalog of the built-in kernels (Kernels/*/*.cu, embedded by the EmbedKernels plugin): every
/// kernel file is a program of it, compiled for the device and launched over raw device pointers on a
/// stream through `launch` (one argument encoding, `KernelArgument`). Each op family's launchers are an
/// extension in its folder under Kernels/ (`CUDAKernels+Norm.swift` beside norm.cu); a new kernel file is
/// registered in `files`. Activations may be fp32, bf16 or fp16 (`KernelElementType`); arithmetic is fp32
/// throughout. Launchers validate sizes and throw `CUDAError.invalidArgument` naming the problem; they
/// never synchronize. Tensors on a GPU share their context's catalog (`CUDAContext.kernels`).
///
///     let kernels = try CUDAKernels(device: device)
///     try kernels.fill(out, count: n, value: 1, type: .bfloat16, stream: stream)
///     try kernels.softmaxForward(y, input: x, rows: 8, columns: 1024, type: .bfloat16, stream: stream)
///     try kernels.layerNormForward(y, mean: mean, rstd: rstd, input: x, weight: w, bias: b,
///                                  rows: tokens, columns: hidden, epsilon: 1e-5, type: .bfloat16, stream: stream)
///
/// Construction starts compiling every program at once on background threads (NVRTC, or the disk
/// cache) and returns; a launch waits only for its own program (`KernelLoading`). A cold start then
/// costs about the slowest program needed rather than the sum of all, and programs a run never launches
/// (flash_attention.cu under cuDNN attention, fp8.cu without FP8) do not hold it up.
///
/// Row kernels (softmax, cross-entropy) run one block per row, the norms a team of threads per
/// row holding it in registers (several rows per block for narrow rows); where `columns % 8 == 0`
/// and every pointer is 16-byte aligned they move 8 elements per access (16 bytes for 16-bit
/// types), else one element at a time.
public final class CUDAKernels {
    public let device: CUDADevice
    private let modules: KernelModules
    private let functionsLock = NSLock()
    private var functions: [String: CUDAFunction] = [:]

    /// Most threads a row kernel's block gets (softmax forward, cross-entropy forward): 512 would make
    /// the block reductions long (16 warp totals combined serially); `megatron bench kernels
    /// --row-threads 128,256,512,1024` compares the choices. Softmax forward, which holds its row in
    /// registers, takes one thread per 32 columns up to this limit.
    public var rowThreads = 256
    /// Threads per block of the backward row kernels without an online-softmax reduction
    /// (softmax and cross-entropy backward): 512, one 16-byte vector per thread of a 4096-wide
    /// bf16 row.
    public var rowBackwardThreads = 512
    /// Threads per block of the norm kernels for rows that fit a warp's registers (768 columns: 4
    /// rows of 32 threads per block), and the threads a wider row spreads over: forward this many
    /// (4096 columns: 128 threads holding 32 elements each), backward 4x as many, at most 512
    /// (4096 columns: 512 threads x 8 elements), as its threads also keep x, dy and the column sums
    /// of the parameter gradients (`NormLaunchPlan.layout`). `megatron bench kernels --row-threads`
    /// compares the choices.
    public var normThreads = 128

    /// The kernel files (the registration of every op family's kernels), each compiled into its own
    /// module or, for `filesSplitByType` and flash attention, several (`programs`).
    public static let files = ["elementwise.cu", "reduce.cu", "tensor_ops.cu",
                               "softmax.cu", "norm.cu", "cross_entropy.cu", "embedding.cu", "dropout.cu",
                               "activation.cu", "cast.cu", "optimizer.cu", "flash_attention.cu", "fp8.cu", "rope.cu",
                               "gated_delta_rule.cu"]

    /// Files compiled with the op and dtype codes (kernel_codes.cuh) in front instead of the
    /// neural-network helpers (neural.cuh): the buffer kernels and the strided tensor ops.
    static let codeHeaderFiles: Set<String> = ["elementwise.cu", "reduce.cu", "tensor_ops.cu"]

    /// Starts compiling the kernel programs (see `KernelLoading`); throws when NVRTC cannot be loaded,
    /// and with `.eager`, any program's compile error.
    public init(device: CUDADevice, cache: KernelCache? = KernelCache.defaultCache(),
                loading: KernelLoading = .background) throws {
        let compiler = try KernelCompiler(architecture: device.properties.architecture, cache: cache)
        self.device = device
        self.modules = KernelModules(files: Self.programs, compiler: compiler, source: Self.programSource,
                                     compilesOnDemand: Self.isAttentionProgram)
        if case .eager = loading { try modules.loadAll(device: device) }
    }

    /// How long the kernel programs (`programs`) took to compile or read from the cache, all of them:
    /// waits until each has finished. Programs that failed to compile are in neither count.
    public var loadReport: KernelLoadReport { modules.report() }

    /// Per-program compile (or cache read) times, in `programs` order; waits like `loadReport`.
    public var moduleTimings: [KernelModuleTiming] { modules.timings() }

    /// The headers a file is compiled after: common.cuh, then kernel_codes.cuh (`codeHeaderFiles`) or
    /// neural.cuh, then fp8.cuh.
    static func headers(of file: String) -> [String] {
        ["common.cuh", codeHeaderFiles.contains(file) ? "kernel_codes.cuh" : "neural.cuh", "fp8.cuh"]
    }

    /// A kernel file as NVRTC compiles it: its `headers`, then the file.
    public static func source(_ file: String) throws -> String {
        try joinedSources(headers(of: file) + [file])
    }

    /// The embedded files `names` joined by newlines; throws naming a missing file.
    static func joinedSources(_ names: [String]) throws -> String {
        let parts = names.map { EmbeddedKernels.sources[$0] }
        guard let texts = parts as? [String] else {
            let missing = names.filter { EmbeddedKernels.sources[$0] == nil }
            throw CUDAError.invalidArgument("no embedded kernel source named \(missing.joined(separator: ", ")); "
                                            + "have \(EmbeddedKernels.sources.keys.sorted())")
        }
        return texts.joined(separator: "\n")
    }

    /// Files compiled as one NVRTC program per element type, so a cold start waits for one type's
    /// kernels only, and the three compile in parallel: worth it for a file of many kernels (norm.cu).
    /// Only files whose kernels all come from `FOR_EACH_FLOAT_TYPE` with the type as a whole
    /// `_`-separated token of their names may be listed (cast.cu names carry two types).
    static let filesSplitByType: Set<String> = ["norm.cu"]

    /// The NVRTC programs started at construction: each file, or for a file split by type, `norm.cu[bf16]`
    /// and its siblings; flash_attention.cu is one program per head dim and type (`attentionProgram`), of
    /// which d64 and d128 start here and the others on first use.
    public static let programs: [String] = files.flatMap { file -> [String] in
        if file == "flash_attention.cu" {
            return [64, 128].flatMap { d in [KernelElementType.bfloat16, .float16].map { attentionProgram(headDim: d, type: $0) } }
        }
        return filesSplitByType.contains(file) ? KernelElementType.allCases.map { "\(file)[\($0.rawValue)]" } : [file]
    }

    /// What a flash-attention program puts between its definitions and flash_attention.cu (the kernels' entry
    /// points): the masks, the shared tile helpers, the forward pass, then the backward passes.
    static let attentionParts = ["flash_attention_masks.cuh", "flash_attention_common.cuh", "flash_attention_forward.cuh",
                                 "flash_attention_backward.cuh"]

    /// The program of flash_attention.cu's kernels for one head dim and type: `flash_attention.cu[d80_bf16]`.
    static func attentionProgram(headDim: Int, type: KernelElementType) -> String {
        "flash_attention.cu[d\(headDim)_\(type.rawValue)]"
    }

    /// The head dim and type of a flash-attention program name, nil for any other name.
    static func attentionProgramParts(_ program: String) -> (headDim: Int, type: KernelElementType)? {
        let prefix = "flash_attention.cu[d"
        guard program.hasPrefix(prefix), program.hasSuffix("]") else { return nil }
        let parts = program.dropFirst(prefix.count).dropLast().split(separator: "_")
        guard parts.count == 2, let d = Int(parts[0]), supportsAttentionHeadDim(d),
              let type = KernelElementType(rawValue: String(parts[1])), type != .float32 else { return nil }
        return (d, type)
    }

    static func isAttentionProgram(_ program: String) -> Bool { attentionProgramParts(program) != nil }

    /// The program holding kernel `name` of `file`: for a split file, the one of the element type
    /// named by a token of `name` (`layer_norm_forward_bf16_2` is in `norm.cu[bf16]`); for
    /// flash_attention.cu, the one of its head dim and type tokens (`flash_forward_d80_bf16`).
    static func program(file: String, kernel name: String) -> String {
        let tokens = name.split(separator: "_")
        let type = KernelElementType.allCases.first { tokens.contains(Substring($0.rawValue)) } ?? .float32
        if file == "flash_attention.cu",
           let d = tokens.lazy.compactMap({ $0.first == "d" ? Int($0.dropFirst()) : nil }).first {
            return attentionProgram(headDim: d, type: type)
        }
        guard filesSplitByType.contains(file) else { return file }
        return "\(file)[\(type.rawValue)]"
    }

    /// A program's source: the file's (`source`); for `file[type]`, the headers, then
    /// `FOR_EACH_FLOAT_TYPE` narrowed to that type, then the file; for a flash-attention program, the
    /// headers, then its head dim, tiling and type, then `attentionParts` and the file.
    static func programSource(_ program: String) throws -> String {
        if let (d, type) = attentionProgramParts(program) {
            return try joinedSources(headers(of: "flash_attention.cu"))
                + "\n#define FA_HEAD_DIM \(d)\n" + AttentionTiling.forHeadDim(d).macroDefinition + "\n"
                + "#define FA_TYPES(MACRO) MACRO(\(type.rawValue), \(type.rawValue))\n"
                + (try joinedSources(attentionParts + ["flash_attention.cu"]))
        }
        guard let type = KernelElementType.allCases.first(where: { program.hasSuffix("[\($0.rawValue)]") }) else {
            return try source(program)
        }
        let file = String(program.dropLast(type.rawValue.count + 2))
        let cType = type == .float32 ? "float" : type.rawValue   // neural.cuh's names: float, bf16, f16
        return try joinedSources(headers(of: file))
            + "\n#undef FOR_EACH_FLOAT_TYPE\n#define FOR_EACH_FLOAT_TYPE(MACRO) MACRO(\(type.rawValue), \(cType))\n"
            + (try joinedSources([file]))
    }

    // MARK: Launch helpers shared by the extensions.

    /// Threads per block for grid-stride elementwise kernels.
    static let elementwiseBlock = LaunchDimensions(256)

    func launch(_ file: String, _ name: String, grid: LaunchDimensions, block: LaunchDimensions, sharedMemoryBytes: Int = 0,
                stream: CUDAStream, _ arguments: [KernelArgument]) throws {
        let function = try function(name, program: Self.program(file: file, kernel: name))
        // Past 48 KiB of static plus dynamic shared memory the kernel must opt in; 32 KiB leaves room for static buffers.
        if sharedMemoryBytes > 32 << 10 { try function.setMaxDynamicSharedMemory(bytes: sharedMemoryBytes) }
        try function.launch(grid: grid, block: block, sharedMemoryBytes: sharedMemoryBytes, stream: stream,
                            arguments: arguments)
    }

    /// Kernel `name` of `program`, looked up once (the lookup is a driver call) and kept.
    private func function(_ name: String, program: String) throws -> CUDAFunction {
        let key = program + "/" + name
        functionsLock.lock()
        let cached = functions[key]
        functionsLock.unlock()
        if let cached { return cached }
        // Not under the lock: the module may still be compiling, and other programs' launches need not wait for it.
        let function = try modules.module(program, device: device).function(named: name)
        functionsLock.lock()
        functions[key] = function
        functionsLock.unlock()
        return function
    }

    /// Blocks for a grid-stride loop over `work` thread-items: enough to cover it, at most 32 per SM.
    func gridStrideBlocks(_ work: Int) -> Int {
        max(1, min((work + Self.elementwiseBlock.x - 1) / Self.elementwiseBlock.x, 32 * device.properties.multiprocessorCount))
    }

    /// One block per row up to 32 per SM; the blocks stride over the remaining rows.
    func rowBlocks(_ rows: Int) -> Int { max(1, min(rows, 32 * device.properties.multiprocessorCount)) }

    /// Threads per block for a row kernel: one per 8-element vector (or element) of the row,
    /// rounded up to whole warps, between 64 and `limit`; wider rows loop.
    static func rowBlock(columns: Int, vectorized: Bool, limit: Int = 512) -> LaunchDimensions {
        let lanes = vectorized ? columns / 8 : columns
        return LaunchDimensions(min(max(64, limit / 32 * 32), max(64, (lanes + 31) / 32 * 32)))
    }

    func rowBlock(columns: Int, vectorized: Bool, backward: Bool = false) -> LaunchDimensions {
        Self.rowBlock(columns: columns, vectorized: vectorized, limit: backward ? rowBackwardThreads : rowThreads)
    }

    /// Whether 16-byte vector access is possible: `columns` a multiple of 8 (so every row starts
    /// aligned) and every non-null pointer 16-byte aligned.
    static func vectorizable(columns: Int, _ pointers: UInt64...) -> Bool {
        columns % 8 == 0 && pointers.allSatisfy { $0 % 16 == 0 }
    }

    /// False for an empty tensor (nothing to launch); throws for a negative count.
    func checkCount(_ kernel: String, _ count: Int) throws -> Bool {
        try Self.require(count >= 0, "\(kernel): negative element count \(count)")
        return count > 0
    }

    static func require(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw CUDAError.invalidArgument(message()) }
    }

    static func requireShape(_ kernel: String, rows: Int, columns: Int) throws {
        try require(rows > 0 && columns > 0, "\(kernel): rows (\(rows)) and columns (\(columns)) must be positive")
        try require(columns <= Int(Int32.max), "\(kernel): \(columns) columns exceed the kernel's 32-bit column index")
    }

    static func requirePointers(_ kernel: String, _ named: KeyValuePairs<String, UInt64>) throws {
        for (name, pointer) in named where pointer == 0 {
            throw CUDAError.invalidArgument("\(kernel): \(name) is a null device pointer")
        }
    }
}
