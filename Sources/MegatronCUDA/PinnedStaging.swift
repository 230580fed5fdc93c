import CCUDA
import Foundation

/// Page-locked host buffers that host<->device copies go through. Pageable memory would make the
/// driver stage through its own bounce buffer and block the host; copies from pinned memory are
/// truly asynchronous. A buffer is reused once the copy that last used it has finished (an event
/// records that), so steady-state transfers allocate nothing.
///
///     let staging = PinnedStaging(device: device)
///     try staging.copyToDevice(hostArray, to: allocation.address, stream: stream)
///     let back: [Float] = try staging.copyToHost(from: allocation.address, count: n, stream: stream)
public final class PinnedStaging {
    /// Buffers are sized in powers of two from this minimum, so a few sizes serve every request.
    static let minimumBytes = 64 << 10

    private let device: CUDADevice
    private let lock = NSLock()
    private var buffers: [PinnedBuffer] = []

    public init(device: CUDADevice) { self.device = device }

    deinit {
        for buffer in buffers {
            _ = try? buffer.lastUse.synchronize()
            _ = device.driver.cuMemFreeHost(buffer.pointer)
        }
    }

    /// Copies `values` into device memory at `address`, asynchronously on `stream`; the host array
    /// may be reused as soon as this returns.
    public func copyToDevice<T>(_ values: [T], to address: UInt64, stream: CUDAStream) throws {
        try values.withUnsafeBytes { try copyToDevice($0, to: address, stream: stream) }
    }

    public func copyToDevice(_ bytes: UnsafeRawBufferPointer, to address: UInt64, stream: CUDAStream) throws {
        guard bytes.count > 0 else { return }
        try device.makeCurrent()
        let buffer = try acquire(bytes: bytes.count)
        buffer.pointer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        try check(device.driver.cuMemcpyHtoDAsync(address, buffer.pointer, bytes.count, stream.handle),
                  "cuMemcpyHtoDAsync(\(bytes.count) bytes)")
        try release(buffer, after: stream)
    }

    /// Copies `count` values of type `T` from device memory at `address`; waits for `stream`,
    /// since the values must be on the host when this returns.
    public func copyToHost<T>(from address: UInt64, count: Int, stream: CUDAStream) throws -> [T] {
        let byteCount = count * MemoryLayout<T>.stride
        guard byteCount > 0 else { return [] }
        let buffer = try enqueueCopyToHost(from: address, byteCount: byteCount, stream: stream)
        try stream.synchronize()
        let values = [T](unsafeUninitializedCapacity: count) { destination, initialized in
            UnsafeMutableRawPointer(destination.baseAddress!).copyMemory(from: buffer.pointer, byteCount: byteCount)
            initialized = count
        }
        try release(buffer, after: stream)
        return values
    }

    /// Starts copying `byteCount` bytes from device memory at `address` to the host, in order on `stream`,
    /// and returns at once: the copy's `bytes()` waits for that copy only, not for what is enqueued after
    /// it, so a value computed early in a step can be read at its end without draining the queue.
    public func startCopyToHost(from address: UInt64, byteCount: Int, stream: CUDAStream) throws -> PendingHostCopy {
        let buffer = try enqueueCopyToHost(from: address, byteCount: byteCount, stream: stream)
        let done = try CUDAEvent(device: device, timing: false)
        try done.record(on: stream)
        return PendingHostCopy { [self] in
            try done.synchronize()
            let bytes = Array(UnsafeRawBufferPointer(start: buffer.pointer, count: byteCount))
            try release(buffer, after: stream)
            return bytes
        }
    }

    /// A pinned buffer that `byteCount` bytes from `address` are being copied into, in order on `stream`.
    private func enqueueCopyToHost(from address: UInt64, byteCount: Int, stream: CUDAStream) throws -> PinnedBuffer {
        try device.makeCurrent()
        let buffer = try acquire(bytes: max(byteCount, 1))
        if byteCount > 0 {
            try check(device.driver.cuMemcpyDtoHAsync(buffer.pointer, address, byteCount, stream.handle),
                      "cuMemcpyDtoHAsync(\(byteCount) bytes)")
        }
        return buffer
    }

    private func acquire(bytes: Int) throws -> PinnedBuffer {
        lock.lock()
        defer { lock.unlock() }
        for buffer in buffers where !buffer.inUse && buffer.bytes >= bytes {
            if try buffer.lastUse.isComplete() {
                buffer.inUse = true
                return buffer
            }
        }
        var size = Self.minimumBytes
        while size < bytes { size *= 2 }
        var pointer: UnsafeMutableRawPointer?
        try check(device.driver.cuMemAllocHost(&pointer, size), "cuMemAllocHost(\(size) bytes)")
        let buffer = PinnedBuffer(pointer: pointer!, bytes: size, lastUse: try CUDAEvent(device: device, timing: false))
        buffer.inUse = true
        buffers.append(buffer)
        return buffer
    }

    private func release(_ buffer: PinnedBuffer, after stream: CUDAStream) throws {
        try buffer.lastUse.record(on: stream)
        lock.lock()
        buffer.inUse = false
        lock.unlock()
    }
}

/// A device-to-host copy in flight (`PinnedStaging.startCopyToHost`); `bytes()` waits for it and may be
/// called once.
public final class PendingHostCopy {
    private var finish: (() throws -> [UInt8])?

    init(finish: @escaping () throws -> [UInt8]) { self.finish = finish }

    /// The copied bytes, once the copy has finished.
    public func bytes() throws -> [UInt8] {
        guard let finish else { preconditionFailure("PendingHostCopy.bytes() called twice") }
        self.finish = nil
        return try finish()
    }
}

private final class PinnedBuffer {
    let pointer: UnsafeMutableRawPointer
    let bytes: Int
    let lastUse: CUDAEvent
    var inUse = false

    init(pointer: UnsafeMutableRawPointer, bytes: Int, lastUse: CUDAEvent) {
        self.pointer = pointer
        self.bytes = bytes
        self.lastUse = lastUse
    }
}
