import CCUDA
import Foundation

/// A tensor operand of the kernels in Kernels/tensor_ops.cu: device address of element [0, 0, ...],
/// dtype code, and shape and strides (in elements) of up to `maxRank` dimensions. Passed to the
/// kernel by value as `struct TensorArg`, so views are read and written in place.
public struct TensorKernelArgument {
    public static let maxRank = 8

    public var address: UInt64
    public var shape: [Int]
    public var strides: [Int]
    public var dtype: DTypeCode

    public init(address: UInt64, shape: [Int], strides: [Int], dtype: DTypeCode) {
        (self.address, self.shape, self.strides, self.dtype) = (address, shape, strides, dtype)
    }

    /// Size of `struct TensorArg`, a multiple of 8.
    public static let byteCount = 144

    /// The 144 bytes of `struct TensorArg { void *data; long long shape[8], strides[8]; int rank, dtype; }`.
    public func bytes() throws -> [UInt8] {
        guard shape.count <= Self.maxRank, shape.count == strides.count else {
            throw CUDAError.invalidArgument("tensor kernels take at most \(Self.maxRank) dimensions, got shape \(shape)")
        }
        var words: [Int64] = [Int64(bitPattern: address)]
        words += (0..<Self.maxRank).map { $0 < shape.count ? Int64(shape[$0]) : 1 }
        words += (0..<Self.maxRank).map { $0 < strides.count ? Int64(strides[$0]) : 0 }
        var out = words.withUnsafeBytes { Array($0) }
        withUnsafeBytes(of: Int32(shape.count)) { out += $0 }
        withUnsafeBytes(of: dtype.rawValue) { out += $0 }
        return out
    }
}

/// The kernels of Kernels/tensor_ops.cu compiled for one device, launched by name through
/// `CUDAFunction.launch` (tensor operands are `KernelArgument.tensor`). Construction starts
/// the compilation in the background and returns (`KernelLoading`); the first launch waits for it.
///
///     let kernels = try TensorKernels(device: device)
///     try kernels.launch("tensor_copy", elements: n, stream: stream,
///                        [.tensor(out), .tensor(input), .int64(Int64(n))])
public final class TensorKernels {
    public let device: CUDADevice
    private static let file = "tensor_ops.cu"
    private let modules: KernelModules
    private let lock = NSLock()
    private var functions: [String: CUDAFunction] = [:]
    public static let blockSize = 256

    /// Starts compiling tensor_ops.cu; throws when NVRTC cannot be loaded, and with `.eager`, a compile error.
    public init(device: CUDADevice, cache: KernelCache? = KernelCache.defaultCache(),
                loading: KernelLoading = .background) throws {
        let compiler = try KernelCompiler(architecture: device.properties.architecture, cache: cache)
        self.device = device
        self.modules = KernelModules(files: [Self.file], compiler: compiler, source: CUDAKernels.source)
        if case .eager = loading { try modules.loadAll(device: device) }
    }

    /// Whether the image came from the disk cache; waits for the compilation (false if it failed).
    public var fromCache: Bool { modules.timings().first?.fromCache ?? false }

    /// A grid-stride launch of `name` over `elements` work items (threads), at most 32 blocks per SM.
    public func launch(_ name: String, elements: Int, stream: CUDAStream, _ parameters: [KernelArgument]) throws {
        guard elements > 0 else { return }
        let blocks = min((elements + Self.blockSize - 1) / Self.blockSize, 32 * device.properties.multiprocessorCount)
        try launch(name, grid: blocks, block: Self.blockSize, stream: stream, parameters)
    }

    /// Enqueues `name` with explicit grid and block sizes.
    public func launch(_ name: String, grid: Int, block: Int, stream: CUDAStream, _ parameters: [KernelArgument]) throws {
        try function(name).launch(grid: .init(grid), block: .init(block), stream: stream, arguments: parameters)
    }

    private func function(_ name: String) throws -> CUDAFunction {
        lock.lock()
        defer { lock.unlock() }
        if let cached = functions[name] { return cached }
        let function = try modules.module(Self.file, device: device).function(named: name)
        functions[name] = function
        return function
    }
}

extension CUDADevice {
    /// Sets `bytes` bytes at `address` to zero, asynchronously on `stream`.
    public func zero(_ address: UInt64, bytes: Int, stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try makeCurrent()
        try check(driver.cuMemsetD8Async(address, 0, bytes, stream.handle), "cuMemsetD8Async(\(bytes) bytes)")
    }

    /// Copies `bytes` bytes between device addresses, asynchronously on `stream`.
    public func copy(from source: UInt64, to destination: UInt64, bytes: Int, stream: CUDAStream) throws {
        guard bytes > 0 else { return }
        try makeCurrent()
        try check(driver.cuMemcpyDtoDAsync(destination, source, bytes, stream.handle), "cuMemcpyDtoDAsync(\(bytes) bytes)")
    }
}
