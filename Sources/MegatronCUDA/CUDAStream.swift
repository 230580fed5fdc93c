import CCUDA

/// A non-blocking CUDA stream: work enqueued on it runs in order, asynchronously to the host
/// and concurrently with other streams.
///
///     let stream = try CUDAStream(device: device)
///     try kernels.fill(pointer, count: n, value: 1, stream: stream)
///     try stream.synchronize()
public final class CUDAStream {
    public let device: CUDADevice
    public let handle: CUstream

    public init(device: CUDADevice) throws {
        try device.makeCurrent()
        var handle: CUstream?
        // Non-blocking: no implicit synchronization with the legacy default stream.
        try check(device.driver.cuStreamCreate(&handle, UInt32(CCU_STREAM_NON_BLOCKING)), "cuStreamCreate")
        self.device = device
        self.handle = handle!
    }

    deinit { _ = device.driver.cuStreamDestroy(handle) }

    /// The key the caching allocator files this stream's blocks under.
    public var allocatorKey: UInt { UInt(bitPattern: handle) }

    /// Blocks the host until all work enqueued so far has finished.
    public func synchronize() throws {
        try check(device.driver.cuStreamSynchronize(handle), "cuStreamSynchronize")
    }

    /// Makes later work on this stream wait until `event` has completed (no host wait).
    public func wait(for event: CUDAEvent) throws {
        try check(device.driver.cuStreamWaitEvent(handle, event.handle, 0), "cuStreamWaitEvent")
    }
}

/// A marker in a stream's work: record it, then wait on it from the host or another stream, or
/// measure the device time between two events.
///
///     let start = try CUDAEvent(device: device), end = try CUDAEvent(device: device)
///     try start.record(on: stream); /* work */; try end.record(on: stream)
///     let ms = try end.elapsedMilliseconds(since: start)
public final class CUDAEvent {
    public let device: CUDADevice
    let handle: CUevent

    /// `timing: false` makes record and wait cheaper; such events cannot be timed.
    public init(device: CUDADevice, timing: Bool = true) throws {
        try device.makeCurrent()
        var handle: CUevent?
        let flags = timing ? CCU_EVENT_DEFAULT : CCU_EVENT_DISABLE_TIMING
        try check(device.driver.cuEventCreate(&handle, UInt32(flags)), "cuEventCreate")
        self.device = device
        self.handle = handle!
    }

    deinit { _ = device.driver.cuEventDestroy(handle) }

    /// Captures the work enqueued on `stream` so far.
    public func record(on stream: CUDAStream) throws {
        try check(device.driver.cuEventRecord(handle, stream.handle), "cuEventRecord")
    }

    /// Blocks the host until the recorded work has finished.
    public func synchronize() throws {
        try check(device.driver.cuEventSynchronize(handle), "cuEventSynchronize")
    }

    /// Whether the recorded work has finished, without waiting.
    public func isComplete() throws -> Bool {
        let status = device.driver.cuEventQuery(handle)
        if Int(status) == CCUDA_ERROR_NOT_READY { return false }
        try check(status, "cuEventQuery")
        return true
    }

    /// Device time in milliseconds from `start` to this event; both must have completed.
    public func elapsedMilliseconds(since start: CUDAEvent) throws -> Double {
        var milliseconds: Float = 0
        try check(device.driver.cuEventElapsedTime(&milliseconds, start.handle, handle), "cuEventElapsedTime")
        return Double(milliseconds)
    }
}
