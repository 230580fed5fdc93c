import Foundation

/// A reference-counted block of memory that tensors view.
///
/// Storage has identity: views made by `reshape`, `transpose` or `narrow` share one storage, so a write
/// through one is seen by all of them, as in PyTorch.
public final class Storage: @unchecked Sendable {
    public let byteCount: Int
    public let device: Device
    /// Base address; on the CPU it is host memory aligned to 64 bytes.
    public let pointer: UnsafeMutableRawPointer
    private let deallocate: (UnsafeMutableRawPointer) -> Void

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

    deinit { deallocate(pointer) }
}
