import Foundation

/// Memory statistics of a `CachingAllocator`, in bytes of rounded block sizes.
public struct AllocatorStatistics: Equatable, Sendable {
    /// Bytes in blocks handed out and not yet freed.
    public var allocatedBytes = 0
    /// Bytes held from the device (segments), allocated or cached.
    public var reservedBytes = 0
    public var peakAllocatedBytes = 0
    public var peakReservedBytes = 0
    /// Blocks handed out and not yet freed.
    public var activeAllocations = 0
    /// Segments obtained from the device since creation (each one a cuMemAlloc).
    public var deviceAllocations = 0
    /// Requests served from a cached block without touching the device.
    public var cacheHits = 0

    public init() {}
}

/// A block of device memory handed out by `CachingAllocator.allocate`; give it back with `free`.
public struct DeviceAllocation: Equatable {
    /// Device address of the first byte (512-byte aligned).
    public let address: UInt64
    /// Bytes the caller asked for.
    public let requestedBytes: Int
    let block: MemoryBlock

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.block === rhs.block }
}

/// A caching, stream-ordered device allocator in the spirit of PyTorch's.
///
/// Freed blocks are kept and reused for later requests on the same stream without any
/// synchronization: work on one stream runs in order, so a block freed after its last use was
/// enqueued can be handed to work enqueued after it. Sizes are rounded to 512 bytes; requests
/// up to 1 MiB come from 2 MiB segments (small pool), larger ones from their own segments of at
/// least 20 MiB (large pool); blocks are split to fit and merged again with free neighbours.
/// A block used on another stream than the one it was allocated on must be kept alive by the
/// caller until that stream is done with it (PyTorch's `record_stream` is not modelled yet).
///
///     let allocator = CachingAllocator(source: DriverMemorySource(device: device))
///     let buffer = try allocator.allocate(bytes: 4 << 20, stream: stream.allocatorKey)
///     defer { allocator.free(buffer) }
public final class CachingAllocator {
    public static let roundingBytes = 512
    public static let smallRequestLimit = 1 << 20
    public static let smallSegmentBytes = 2 << 20
    public static let largeSegmentMinimum = 20 << 20
    /// Large requests below this share a 20 MiB segment; at or above it they get their own.
    static let largeSharedLimit = 10 << 20
    static let largeSegmentGranularity = 2 << 20

    private let source: DeviceMemorySource
    private let lock = NSLock()
    private var smallPool = FreeBlockPool()
    private var largePool = FreeBlockPool()
    private var segments: [MemoryBlock] = []   // first block of every segment
    private var stats = AllocatorStatistics()

    public init(source: DeviceMemorySource) { self.source = source }

    deinit { _ = try? emptyCache() }

    /// Hands out at least `bytes` bytes (rounded up to 512) for use on the stream `stream`. When the device has
    /// no room, gives the cached segments back and tries once more, then throws `CUDAError.outOfMemory`
    /// (`OutOfMemoryReport`: the request, the device's free and total memory, what the cache holds, the flags
    /// that need less memory).
    public func allocate(bytes: Int, stream: UInt) throws -> DeviceAllocation {
        guard bytes >= 0 else { throw CUDAError.invalidArgument("cannot allocate \(bytes) bytes") }
        lock.lock()
        defer { lock.unlock() }
        let size = Self.roundedSize(bytes)
        let small = size <= Self.smallRequestLimit
        var block: MemoryBlock
        let cachedBlock = small ? smallPool.takeBestFit(size: size, stream: stream)
                                : largePool.takeBestFit(size: size, stream: stream)
        if let cached = cachedBlock {
            block = cached
            stats.cacheHits += 1
        } else {
            block = try newSegment(size: size, small: small, stream: stream, requested: bytes)
        }
        if let rest = split(block, size: size, small: small) {
            insertFree(rest)
        }
        block.isAllocated = true
        stats.allocatedBytes += block.size
        stats.activeAllocations += 1
        stats.peakAllocatedBytes = max(stats.peakAllocatedBytes, stats.allocatedBytes)
        return DeviceAllocation(address: block.address, requestedBytes: bytes, block: block)
    }

    /// Returns a block to the cache. Work already enqueued on its stream may still use it; only
    /// later work on the same stream can receive it again.
    public func free(_ allocation: DeviceAllocation) {
        lock.lock()
        defer { lock.unlock() }
        let block = allocation.block
        precondition(block.isAllocated, "double free of device block at 0x\(String(block.address, radix: 16))")
        block.isAllocated = false
        stats.allocatedBytes -= block.size
        stats.activeAllocations -= 1
        insertFree(merge(block))
    }

    /// Gives every cached segment that holds no live block back to the device.
    public func emptyCache() throws {
        lock.lock()
        defer { lock.unlock() }
        try releaseCachedSegments()
    }

    public var statistics: AllocatorStatistics {
        lock.lock()
        defer { lock.unlock() }
        return stats
    }

    /// Starts the peak counters again from the current values.
    public func resetPeakStatistics() {
        lock.lock()
        defer { lock.unlock() }
        stats.peakAllocatedBytes = stats.allocatedBytes
        stats.peakReservedBytes = stats.reservedBytes
    }

    // MARK: - Sizes

    static func roundedSize(_ bytes: Int) -> Int {
        max(roundingBytes, (bytes + roundingBytes - 1) / roundingBytes * roundingBytes)
    }

    static func segmentSize(forRounded size: Int) -> Int {
        if size <= smallRequestLimit { return smallSegmentBytes }
        if size < largeSharedLimit { return largeSegmentMinimum }
        return (size + largeSegmentGranularity - 1) / largeSegmentGranularity * largeSegmentGranularity
    }

    // MARK: - Segments and blocks

    private func newSegment(size: Int, small: Bool, stream: UInt, requested: Int) throws -> MemoryBlock {
        let segmentBytes = Self.segmentSize(forRounded: size)
        var address = try source.allocate(bytes: segmentBytes)
        if address == nil {
            // The cache may hold enough memory in segments of the wrong size or stream: release and retry.
            try releaseCachedSegments()
            address = try source.allocate(bytes: segmentBytes)
        }
        guard let address else {
            let report = OutOfMemoryReport(requestedBytes: requested, segmentBytes: segmentBytes,
                                           heldBytes: stats.reservedBytes, inUseBytes: stats.allocatedBytes,
                                           capacity: source.deviceCapacity())
            throw CUDAError.outOfMemory(report.description)
        }
        let block = MemoryBlock(address: address, size: segmentBytes, stream: stream, isSmallPool: small)
        segments.append(block)
        stats.reservedBytes += segmentBytes
        stats.deviceAllocations += 1
        stats.peakReservedBytes = max(stats.peakReservedBytes, stats.reservedBytes)
        return block
    }

    /// Cuts `block` down to `size` when the remainder is worth keeping; returns the remainder.
    /// Small-pool remainders of one rounding unit are kept; large-pool ones only above 1 MiB, so
    /// large segments are not ground into slivers.
    private func split(_ block: MemoryBlock, size: Int, small: Bool) -> MemoryBlock? {
        let remaining = block.size - size
        let worthSplitting = small ? remaining >= Self.roundingBytes : remaining > Self.smallRequestLimit
        guard worthSplitting else { return nil }
        let rest = MemoryBlock(address: block.address + UInt64(size), size: remaining,
                               stream: block.stream, isSmallPool: block.isSmallPool)
        rest.previous = block
        rest.next = block.next
        block.next?.previous = rest
        block.next = rest
        block.size = size
        return rest
    }

    /// Joins a just-freed block with free neighbours in its segment; returns the joined block.
    private func merge(_ block: MemoryBlock) -> MemoryBlock {
        var block = block
        if let previous = block.previous, !previous.isAllocated {
            removeFree(previous)
            previous.size += block.size
            previous.next = block.next
            block.next?.previous = previous
            block = previous
        }
        if let next = block.next, !next.isAllocated {
            removeFree(next)
            block.size += next.size
            block.next = next.next
            next.next?.previous = block
        }
        return block
    }

    private func insertFree(_ block: MemoryBlock) {
        if block.isSmallPool { smallPool.insert(block) } else { largePool.insert(block) }
    }

    private func removeFree(_ block: MemoryBlock) {
        if block.isSmallPool { smallPool.remove(block) } else { largePool.remove(block) }
    }

    private func releaseCachedSegments() throws {
        var kept: [MemoryBlock] = []
        for segment in segments {
            // A segment is releasable when it is one free block spanning all of it.
            guard !segment.isAllocated, segment.next == nil else {
                kept.append(segment)
                continue
            }
            removeFree(segment)
            try source.free(address: segment.address)
            stats.reservedBytes -= segment.size
        }
        segments = kept
    }
}

/// A contiguous range of a segment, free or handed out; neighbours in the same segment are linked.
final class MemoryBlock {
    let address: UInt64
    var size: Int
    let stream: UInt
    let isSmallPool: Bool
    var isAllocated = false
    weak var previous: MemoryBlock?
    var next: MemoryBlock?

    init(address: UInt64, size: Int, stream: UInt, isSmallPool: Bool) {
        self.address = address
        self.size = size
        self.stream = stream
        self.isSmallPool = isSmallPool
    }
}

/// Free blocks ordered by (stream, size, address), so the best fit on a stream is a binary search.
struct FreeBlockPool {
    private var blocks: [MemoryBlock] = []

    private static func precedes(_ a: MemoryBlock, _ key: (UInt, Int, UInt64)) -> Bool {
        (a.stream, a.size, a.address) < key
    }

    private func lowerBound(_ key: (UInt, Int, UInt64)) -> Int {
        var low = 0, high = blocks.count
        while low < high {
            let mid = (low + high) / 2
            if Self.precedes(blocks[mid], key) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    mutating func insert(_ block: MemoryBlock) {
        blocks.insert(block, at: lowerBound((block.stream, block.size, block.address)))
    }

    mutating func remove(_ block: MemoryBlock) {
        let index = lowerBound((block.stream, block.size, block.address))
        precondition(index < blocks.count && blocks[index] === block, "free block missing from its pool")
        blocks.remove(at: index)
    }

    /// Removes and returns the smallest free block on `stream` with at least `size` bytes.
    mutating func takeBestFit(size: Int, stream: UInt) -> MemoryBlock? {
        let index = lowerBound((stream, size, 0))
        guard index < blocks.count, blocks[index].stream == stream else { return nil }
        return blocks.remove(at: index)
    }
}
