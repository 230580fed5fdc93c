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
