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

/// One argument of a kernel launch, passed by value as the kernel's parameter list declares it.
public enum KernelArgument {
    case pointer(UInt64)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float32(Float)

    fileprivate var bits: UInt64 {
        switch self {
        case .pointer(let value), .uint64(let value): return value
        case .int32(let value): return UInt64(UInt32(bitPattern: value))
        case .uint32(let value): return UInt64(value)
        case .int64(let value): return UInt64(bitPattern: value)
        case .float32(let value): return UInt64(value.bitPattern)
        }
    }
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

    /// Enqueues the kernel on `stream`. Each argument sits in its own 8-byte slot; on the
    /// little-endian targets CUDA runs on, the low bytes of a slot are the 4-byte value.
    public func launch(grid: LaunchDimensions, block: LaunchDimensions, sharedMemoryBytes: Int = 0,
                       stream: CUDAStream, arguments: [KernelArgument]) throws {
        guard grid.x > 0, grid.y > 0, grid.z > 0, block.x > 0, block.y > 0, block.z > 0 else {
            throw CUDAError.invalidArgument("\(name): empty launch (grid \(grid), block \(block))")
        }
        let driver = module.device.driver
        try module.device.makeCurrent()
        var slots = arguments.map(\.bits)
        let status = slots.withUnsafeMutableBufferPointer { slotBuffer -> CUresult in
            var pointers: [UnsafeMutableRawPointer?] = (0..<slotBuffer.count).map { UnsafeMutableRawPointer(slotBuffer.baseAddress! + $0) }
            return pointers.withUnsafeMutableBufferPointer {
                driver.cuLaunchKernel(handle, UInt32(grid.x), UInt32(grid.y), UInt32(grid.z),
                                      UInt32(block.x), UInt32(block.y), UInt32(block.z),
                                      UInt32(sharedMemoryBytes), stream.handle, $0.baseAddress, nil)
            }
        }
        try check(status, "cuLaunchKernel(\(name))")
    }

    /// Allows more than 48 KiB of dynamic shared memory for this kernel.
    public func setMaxDynamicSharedMemory(bytes: Int) throws {
        try check(module.device.driver.cuFuncSetAttribute(handle, Int32(CCU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES),
                                                          Int32(bytes)), "cuFuncSetAttribute(\(name))")
    }
}
