import CCUDA

/// A kernel image loaded into a device's context (cuModuleLoadData).
public final class CUDAModule {
    public let device: CUDADevice
    let handle: CUmodule

    public init(device: CUDADevice, image: KernelImage) throws {
        try device.makeCurrent()
        var handle: CUmodule?
        try image.bytes.withUnsafeBytes {
            try check(device.driver.cuModuleLoadData(&handle, $0.baseAddress!), "cuModuleLoadData(\(image.format))")
        }
        self.device = device
        self.handle = handle!
    }

    deinit { _ = device.driver.cuModuleUnload(handle) }

    /// The `extern "C" __global__` function `name` of this module.
    public func function(named name: String) throws -> CUDAFunction {
        var function: CUfunction?
        try check(device.driver.cuModuleGetFunction(&function, handle, name), "cuModuleGetFunction(\(name))")
        return CUDAFunction(module: self, handle: function!, name: name)
    }
}

/// One argument of a kernel launch, passed by value as the kernel's parameter list declares it: a
/// scalar, a pointer, or a tensor operand (tensor_ops.cu's `struct TensorArg`). Every kernel of every
/// file takes its arguments in this one encoding, through `CUDAFunction.launch`.
public enum KernelArgument {
    case pointer(UInt64)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float32(Float)
    case tensor(TensorKernelArgument)

    /// Bytes of the argument's slot in the launch's parameter buffer: 8 for a scalar or pointer (a
    /// 4-byte value in the low bytes, as little-endian CUDA targets read it), the struct's size for a tensor.
    fileprivate var slotSize: Int {
        if case .tensor = self { return TensorKernelArgument.byteCount }
        return 8
    }

    /// Writes the argument's bytes at `slot`, which holds `slotSize` bytes, 8-byte aligned.
    fileprivate func write(to slot: UnsafeMutableRawPointer) throws {
        switch self {
        case .pointer(let value), .uint64(let value): slot.storeBytes(of: value, as: UInt64.self)
        case .int32(let value): slot.storeBytes(of: UInt64(UInt32(bitPattern: value)), as: UInt64.self)
        case .uint32(let value): slot.storeBytes(of: UInt64(value), as: UInt64.self)
        case .int64(let value): slot.storeBytes(of: value, as: Int64.self)
        case .float32(let value): slot.storeBytes(of: UInt64(value.bitPattern), as: UInt64.self)
        case .tensor(let tensor): try tensor.bytes().withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
    }
}

/// A launch's arguments laid out for `cuLaunchKernel`: one buffer of 8-byte-aligned slots and a
/// pointer to each; the buffer lives as long as this value.
final class KernelParameters {
    let buffer: UnsafeMutableRawPointer
    var pointers: [UnsafeMutableRawPointer?]
    /// Each argument's offset in `buffer`.
    let offsets: [Int]

    init(_ arguments: [KernelArgument]) throws {
        let sizes = arguments.map(\.slotSize)
        let offsets = Array(sizes.reduce(into: [0]) { $0.append($0.last! + $1) }.dropLast())
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(sizes.reduce(0, +), 8), alignment: 16)
        do {
            for (argument, offset) in zip(arguments, offsets) { try argument.write(to: buffer + offset) }
        } catch {
            buffer.deallocate()
            throw error
        }
        (self.buffer, self.offsets, pointers) = (buffer, offsets, offsets.map { buffer + $0 })
    }

    deinit { buffer.deallocate() }
}

/// Grid or block extent of a launch.
public struct LaunchDimensions: Equatable, Sendable {
    public var x: Int, y: Int, z: Int
    public init(_ x: Int, _ y: Int = 1, _ z: Int = 1) { (self.x, self.y, self.z) = (x, y, z) }
}

/// A kernel function of a loaded module.
///
///     try function.launch(grid: .init(blocks), block: .init(256), stream: stream,
///                         arguments: [.pointer(out), .float32(1), .int64(Int64(n))])
public struct CUDAFunction {
    public let module: CUDAModule
    let handle: CUfunction
    public let name: String

    /// Enqueues the kernel on `stream`: the one launch site of every built-in kernel. The arguments
    /// are laid out in one buffer, each in its own 8-byte-aligned slot (`KernelArgument`); the driver
    /// copies each parameter's bytes from its slot.
    public func launch(grid: LaunchDimensions, block: LaunchDimensions, sharedMemoryBytes: Int = 0,
                       stream: CUDAStream, arguments: [KernelArgument]) throws {
        guard grid.x > 0, grid.y > 0, grid.z > 0, block.x > 0, block.y > 0, block.z > 0 else {
            throw CUDAError.invalidArgument("\(name): empty launch (grid \(grid), block \(block))")
        }
        let parameters = try KernelParameters(arguments)
        let driver = module.device.driver
        try module.device.makeCurrent()
        let status = parameters.pointers.withUnsafeMutableBufferPointer {
            driver.cuLaunchKernel(handle, UInt32(grid.x), UInt32(grid.y), UInt32(grid.z),
                                  UInt32(block.x), UInt32(block.y), UInt32(block.z),
                                  UInt32(sharedMemoryBytes), stream.handle, $0.baseAddress, nil)
        }
        try check(status, "cuLaunchKernel(\(name))")
    }

    /// Allows more than 48 KiB of dynamic shared memory for this kernel.
    public func setMaxDynamicSharedMemory(bytes: Int) throws {
        try check(module.device.driver.cuFuncSetAttribute(handle, Int32(CCU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES),
                                                          Int32(bytes)), "cuFuncSetAttribute(\(name))")
    }
}
