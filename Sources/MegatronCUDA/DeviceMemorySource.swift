import CCUDA

/// Where the caching allocator gets its segments from. The real source is `cuMemAlloc`; tests
/// use a deterministic fake so the allocator's bookkeeping runs on machines without a GPU.
public protocol DeviceMemorySource: AnyObject {
    /// Returns the address of `bytes` of fresh device memory, or nil when the device is out of memory.
    func allocate(bytes: Int) throws -> UInt64?
    /// Returns memory obtained from `allocate`.
    func free(address: UInt64) throws
    /// The device's name and its free and total memory, for out-of-memory messages; nil when unknown.
    /// Asked only after an allocation failed.
    func deviceCapacity() -> DeviceCapacity?
}

/// A device's memory as the driver reports it (`cuMemGetInfo`).
public struct DeviceCapacity: Equatable, Sendable {
    /// How the device is named in messages: "device 0 (NVIDIA H100 80GB HBM3)".
    public var name: String
    public var freeBytes: Int
    public var totalBytes: Int

    public init(name: String, freeBytes: Int, totalBytes: Int) {
        self.name = name
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
    }
}

/// Device memory straight from the driver (cuMemAlloc_v2 / cuMemFree_v2).
public final class DriverMemorySource: DeviceMemorySource {
    let device: CUDADevice

    public init(device: CUDADevice) { self.device = device }

    public func allocate(bytes: Int) throws -> UInt64? {
        try device.makeCurrent()
        var address: CUdeviceptr = 0
        let status = device.driver.cuMemAlloc(&address, bytes)
        if Int(status) == CCUDA_ERROR_OUT_OF_MEMORY { return nil }
        try check(status, "cuMemAlloc(\(bytes) bytes)")
        return address
    }

    public func free(address: UInt64) throws {
        try device.makeCurrent()
        try check(device.driver.cuMemFree(address), "cuMemFree")
    }

    public func deviceCapacity() -> DeviceCapacity? {
        guard let info = try? device.memoryInfo() else { return nil }
        return DeviceCapacity(name: "device \(device.ordinal) (\(device.properties.name))", freeBytes: info.free,
                              totalBytes: info.total)
    }
}
