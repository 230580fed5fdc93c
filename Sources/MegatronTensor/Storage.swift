import Foundation

/// A reference-counted block of memory that tensors view.
///
/// Storage has identity: views made by `reshape`, `transpose` or `narrow` share one storage, so a write
/// through one is seen by all of them, as in PyTorch.
public final class Storage: @unchecked Sendable {
    public let byteCount: Int
    public let device: Device
    /// Base address; on the CPU it is host memory aligned to 64 bytes. It moves only in `alias(into:byteOffset:)`.
    public private(set) var pointer: UnsafeMutableRawPointer
    private var deallocate: (UnsafeMutableRawPointer) -> Void
    /// The storage whose memory this one uses after `alias(into:byteOffset:)`, kept alive by it.
    private var memoryOwner: Storage?

    /// Allocates zeroed host memory.
    public init(cpuByteCount: Int) {
        byteCount = cpuByteCount
        device = .cpu
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(cpuByteCount, 1), alignment: 64)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(cpuByteCount, 1))
        deallocate = { $0.deallocate() }
    }

    /// Wraps memory owned elsewhere (a device allocator, an mmap); `deallocate` returns it.
    public init(pointer: UnsafeMutableRawPointer, byteCount: Int, device: Device,
                deallocate: @escaping (UnsafeMutableRawPointer) -> Void) {
        self.pointer = pointer
        self.byteCount = byteCount
        self.device = device
        self.deallocate = deallocate
    }

    /// Moves this storage into `byteCount` bytes of `other` from `byteOffset` on, as PyTorch's
    /// `param.data = buffer_view`: every tensor viewing this storage reads and writes there from now on. The
    /// contents are not carried over, and this storage's own memory is returned at once, so no queued work may
    /// still use it except on the stream it was allocated for (whose order the caching allocator keeps).
    ///
    ///     param.storage.alias(into: flat.storage, byteOffset: start * 2)   // param now lives in `flat`
    public func alias(into other: Storage, byteOffset: Int) {
        precondition(other.device == device, "cannot alias storage on \(device) into storage on \(other.device)")
        precondition(byteOffset >= 0 && byteOffset + byteCount <= other.byteCount,
                     "bytes \(byteOffset)..<\(byteOffset + byteCount) are outside a storage of \(other.byteCount) bytes")
        precondition(other !== self, "a storage cannot alias itself")
        deallocate(pointer)
        pointer = other.pointer + byteOffset
        deallocate = { _ in }
        memoryOwner = other
    }

    deinit { deallocate(pointer) }
}
