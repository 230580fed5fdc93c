import CCUDA

/// Where the caching allocator gets its segments from. The real source is `cuMemAlloc`; tests
/// use a deterministic fake so the allocator's bookkeeping runs on machines without a GPU.
public protocol DeviceMemorySource: AnyObject {
    /// Returns the address of `bytes` of fresh device memory, or nil when the device is out of memory.
    func allocate(bytes: Int) throws -> UInt64?
    /// Returns memory obtained from `allocate`.
    func free(address: UInt64) throws
    /// Extra words for out-of-memory messages (e.g. the device's free and total memory).
    func capacityDescription() -> String
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

    public func capacityDescription() -> String {
        guard let info = try? device.memoryInfo() else { return "" }
        return "; device \(device.ordinal) (\(device.properties.name)) has \(formatBytes(info.total)) in total, "
            + "\(formatBytes(info.free)) free"
    }
}
