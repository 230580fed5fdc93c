import CCUDA

extension CUDAStream {
    /// Enqueues a device-to-device copy of `bytes` bytes (cuMemcpyDtoDAsync); the bandwidth
    /// reference that `megatron bench kernels` compares memory-bound kernels against.
    ///
    ///     try stream.copyDeviceToDevice(to: destination.address, from: source.address, bytes: n)
    public func copyDeviceToDevice(to destination: UInt64, from source: UInt64, bytes: Int) throws {
        guard bytes > 0 else { return }
        try device.makeCurrent()
        try check(device.driver.cuMemcpyDtoDAsync(destination, source, bytes, handle), "cuMemcpyDtoDAsync(\(bytes) bytes)")
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
