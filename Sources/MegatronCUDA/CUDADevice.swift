import CCUDA
import Foundation

/// What a device reports about itself.
public struct CUDADeviceProperties: Equatable, Sendable {
    public var name: String
    public var multiprocessorCount: Int
    public var computeCapability: (major: Int, minor: Int)
    public var totalMemoryBytes: Int
    public var l2CacheBytes: Int
    public var maxSharedMemoryPerBlockOptin: Int

    /// The NVRTC target for this device's own instructions: `sm_90a` on Hopper (wgmma and
    /// setmaxnreg need the arch-specific `a` target there), `sm_XY` elsewhere.
    public var architecture: String { Self.architecture(major: computeCapability.major, minor: computeCapability.minor) }

    static func architecture(major: Int, minor: Int) -> String {
        major == 9 && minor == 0 ? "sm_90a" : "sm_\(major)\(minor)"
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.name == rhs.name && lhs.multiprocessorCount == rhs.multiprocessorCount
            && lhs.computeCapability == rhs.computeCapability && lhs.totalMemoryBytes == rhs.totalMemoryBytes
            && lhs.l2CacheBytes == rhs.l2CacheBytes
            && lhs.maxSharedMemoryPerBlockOptin == rhs.maxSharedMemoryPerBlockOptin
    }
}

/// One GPU and its primary context (the context the CUDA runtime and PyTorch share).
///
///     let device = try CUDADevice.select()          // LOCAL_RANK, else 0
///     print(device.properties.name, device.properties.architecture)
public final class CUDADevice {
    public let ordinal: Int
    public let properties: CUDADeviceProperties
    let driver: CCUDADriver
    let handle: CUdevice
    let context: CUcontext

    /// Opens device `ordinal` and retains its primary context.
    public init(ordinal: Int) throws {
        let driver = try CUDALibraries.driver()
        let count = try Self.count()
        guard ordinal >= 0, ordinal < count else {
            throw CUDAError.noDevice("CUDA device \(ordinal) does not exist: \(count) device(s) visible")
        }
        var handle: CUdevice = 0
        try check(driver.cuDeviceGet(&handle, Int32(ordinal)), "cuDeviceGet(\(ordinal))")
        var context: CUcontext?
        try check(driver.cuDevicePrimaryCtxRetain(&context, handle), "cuDevicePrimaryCtxRetain")
        self.driver = driver
        self.ordinal = ordinal
        self.handle = handle
        self.context = context!
        self.properties = try Self.readProperties(driver, handle)
        try makeCurrent()
    }

    deinit { _ = driver.cuDevicePrimaryCtxRelease(handle) }

    /// Opens the device this process should use: `index` if given, else `LOCAL_RANK` (set by
    /// torchrun-style launchers, one process per GPU), else device 0.
    public static func select(index: Int? = nil,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> CUDADevice {
        try CUDADevice(ordinal: try ordinal(index: index, environment: environment))
    }

    /// The ordinal `select` would open; pure, so launchers can validate it without a GPU.
    public static func ordinal(index: Int?, environment: [String: String]) throws -> Int {
        if let index { return index }
        guard let rank = environment["LOCAL_RANK"] else { return 0 }
        guard let value = Int(rank), value >= 0 else {
            throw CUDAError.invalidArgument("LOCAL_RANK must be a non-negative integer, got '\(rank)'")
        }
        return value
    }

    /// Number of visible devices.
    public static func count() throws -> Int {
        let driver = try CUDALibraries.driver()
        var count: Int32 = 0
        try check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        return Int(count)
    }

    /// Binds the primary context to the calling thread; every entry point that talks to the
    /// driver calls it, so any thread may use the device.
    public func makeCurrent() throws {
        try check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    }

    /// Waits for all work on all streams of this device.
    public func synchronize() throws {
        try makeCurrent()
        try check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
    }

    /// Free and total device memory as the driver sees it (other processes included).
    public func memoryInfo() throws -> (free: Int, total: Int) {
        try makeCurrent()
        var free = 0, total = 0
        try check(driver.cuMemGetInfo(&free, &total), "cuMemGetInfo")
        return (free, total)
    }

    private static func readProperties(_ driver: CCUDADriver, _ device: CUdevice) throws -> CUDADeviceProperties {
        var name = [CChar](repeating: 0, count: 256)
        try check(driver.cuDeviceGetName(&name, Int32(name.count), device), "cuDeviceGetName")
        var total = 0
        try check(driver.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem")
        func attribute(_ attribute: Int, _ label: String) throws -> Int {
            var value: Int32 = 0
            try check(driver.cuDeviceGetAttribute(&value, Int32(attribute), device), "cuDeviceGetAttribute(\(label))")
            return Int(value)
        }
        return CUDADeviceProperties(
            name: String(cString: name),
            multiprocessorCount: try attribute(CCU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count"),
            computeCapability: (try attribute(CCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "compute capability major"),
                                try attribute(CCU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "compute capability minor")),
            totalMemoryBytes: total,
            l2CacheBytes: try attribute(CCU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, "L2 cache size"),
            maxSharedMemoryPerBlockOptin: try attribute(CCU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                                                        "max shared memory per block (opt-in)"))
    }
}
