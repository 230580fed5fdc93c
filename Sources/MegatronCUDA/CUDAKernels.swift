import Foundation

/// Element types the built-in kernels handle. `CUDAKernels` (fill, uniform, axpby) has fp32 and
/// bf16 versions; `NeuralKernels` has all three.
public enum KernelElementType: String, Sendable, CaseIterable {
    case float32 = "f32"
    case bfloat16 = "bf16"
    case float16 = "f16"

    public var byteCount: Int { self == .float32 ? 4 : 2 }
}

/// How long loading the built-in kernels took, and whether NVRTC ran or the disk cache served them.
public struct KernelLoadReport: Sendable {
    public var milliseconds: Double
    public var compiledCount: Int
    public var cachedCount: Int
}

/// The built-in kernels (Kernels/*.cu, embedded by the EmbedKernels plugin), compiled for the
/// device at construction and launched over raw device pointers.
///
///     let kernels = try CUDAKernels(device: device)
///     try kernels.fill(out, count: n, value: 1, type: .bfloat16, stream: stream)
///     try kernels.axpby(out, a, b, alpha: 1, beta: 1, count: n, type: .float32, stream: stream)  // out = a + b
public final class CUDAKernels {
    public let device: CUDADevice
    public let loadReport: KernelLoadReport
    private let elementwise: CUDAModule
    private let reduce: CUDAModule
    private let blockSize = 256

    public init(device: CUDADevice, cache: KernelCache? = KernelCache.defaultCache()) throws {
        let start = Date()
        let compiler = try KernelCompiler(architecture: device.properties.architecture, cache: cache)
        var images: [KernelImage] = []
        func load(_ file: String) throws -> CUDAModule {
            let image = try compiler.compile(source: try Self.source(file), name: file)
            images.append(image)
            return try CUDAModule(device: device, image: image)
        }
        self.device = device
        self.elementwise = try load("elementwise.cu")
        self.reduce = try load("reduce.cu")
        let cached = images.filter(\.fromCache).count
        self.loadReport = KernelLoadReport(milliseconds: Date().timeIntervalSince(start) * 1000,
                                           compiledCount: images.count - cached, cachedCount: cached)
    }

    /// A kernel file with the shared headers (common.cuh, kernel_codes.cuh, then fp8.cuh) in front, as NVRTC compiles it.
    public static func source(_ file: String) throws -> String {
        try joinedSources(["common.cuh", "kernel_codes.cuh", "fp8.cuh", file])
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

    /// Sets `count` elements at `pointer` to `value` (rounded to the element type).
    public func fill(_ pointer: UInt64, count: Int, value: Float, type: KernelElementType, stream: CUDAStream) throws {
        try launch(elementwise, "fill_\(type.rawValue)", count: count, stream: stream,
                   [.pointer(pointer), .float32(value), .int64(Int64(count))])
    }

    /// Fills with values drawn uniformly from [low, high), a pure function of (seed, index).
    public func uniform(_ pointer: UInt64, count: Int, seed: UInt64, low: Float, high: Float,
                        type: KernelElementType, stream: CUDAStream) throws {
        try launch(elementwise, "uniform_\(type.rawValue)", count: count, stream: stream,
                   [.pointer(pointer), .int64(Int64(count)), .uint64(seed), .float32(low), .float32(high)])
    }

    /// out = alpha * a + beta * b with 16-byte loads and stores; all pointers 16-byte aligned.
    /// With beta == 0, `b` is not read (pass any pointer).
    public func axpby(_ out: UInt64, _ a: UInt64, _ b: UInt64, alpha: Float, beta: Float, count: Int,
                      type: KernelElementType, stream: CUDAStream) throws {
        for (label, pointer) in [("out", out), ("a", a), ("b", b)] where pointer % 16 != 0 {
            throw CUDAError.invalidArgument("axpby: \(label) pointer 0x\(String(pointer, radix: 16)) is not 16-byte aligned")
        }
        let lanes = 16 / type.byteCount
        try launch(elementwise, "axpby_\(type.rawValue)", count: (count + lanes - 1) / lanes, stream: stream,
                   [.pointer(out), .pointer(a), .pointer(b), .float32(alpha), .float32(beta), .int64(Int64(count))])
    }

    /// Writes the sum of `count` float32 values at `input` to `out` (one float32). `scratch` must
    /// hold `sumScratchCount` floats. Deterministic for a given count.
    public func sum(_ out: UInt64, _ input: UInt64, count: Int, scratch: UInt64, stream: CUDAStream) throws {
        let blocks = Self.sumBlockCount(count: count, multiprocessors: device.properties.multiprocessorCount)
        try reduce.function(named: "sum_f32_partials").launch(
            grid: .init(blocks), block: .init(blockSize), stream: stream,
            arguments: [.pointer(scratch), .pointer(input), .int64(Int64(count))])
        try reduce.function(named: "sum_f32_final").launch(
            grid: .init(1), block: .init(1024), stream: stream,
            arguments: [.pointer(out), .pointer(scratch), .int32(Int32(blocks))])
    }

    /// Floats of scratch space `sum` needs.
    public var sumScratchCount: Int { Self.sumBlockCount(count: .max, multiprocessors: device.properties.multiprocessorCount) }

    /// One block per 256 elements, at most 4 per SM (each block loops over its grid-stride slice).
    static func sumBlockCount(count: Int, multiprocessors: Int) -> Int {
        let needed = count / 256 + (count % 256 == 0 ? 0 : 1)   // no overflow for count == .max
        return max(1, min(4 * multiprocessors, needed))
    }

    /// A grid-stride launch: enough blocks to cover `count` threads' work, at most 32 per SM.
    private func launch(_ module: CUDAModule, _ name: String, count: Int, stream: CUDAStream, _ arguments: [KernelArgument]) throws {
        guard count > 0 else { return }
        let blocks = min((count + blockSize - 1) / blockSize, 32 * device.properties.multiprocessorCount)
        try module.function(named: name).launch(grid: .init(blocks), block: .init(blockSize), stream: stream, arguments: arguments)
    }
}
