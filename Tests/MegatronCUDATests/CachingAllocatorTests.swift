import XCTest
@testable import MegatronCUDA

/// A deterministic device: bump-pointer addresses, a capacity, and a log of calls.
private final class FakeMemory: DeviceMemorySource {
    var capacity: Int
    var inUse = 0
    var nextAddress: UInt64 = 1 << 32
    var live: [UInt64: Int] = [:]
    var allocateCalls = 0

    init(capacity: Int = 1 << 40) { self.capacity = capacity }

    func allocate(bytes: Int) throws -> UInt64? {
        allocateCalls += 1
        guard inUse + bytes <= capacity else { return nil }
        let address = nextAddress
        nextAddress += UInt64(bytes)
        inUse += bytes
        live[address] = bytes
        return address
    }

    func free(address: UInt64) throws {
        inUse -= live.removeValue(forKey: address)!
    }

    func deviceCapacity() -> DeviceCapacity? {
        DeviceCapacity(name: "fake device", freeBytes: capacity - inUse, totalBytes: capacity)
    }
}

final class CachingAllocatorTests: XCTestCase {
    private let streamA: UInt = 0xA, streamB: UInt = 0xB

    func testRoundingAndSegmentSizes() {
        XCTAssertEqual(CachingAllocator.roundedSize(0), 512)
        XCTAssertEqual(CachingAllocator.roundedSize(1), 512)
        XCTAssertEqual(CachingAllocator.roundedSize(513), 1024)
        XCTAssertEqual(CachingAllocator.segmentSize(forRounded: 1 << 20), 2 << 20)
        XCTAssertEqual(CachingAllocator.segmentSize(forRounded: (1 << 20) + 512), 20 << 20)
        XCTAssertEqual(CachingAllocator.segmentSize(forRounded: 10 << 20), 10 << 20)
        XCTAssertEqual(CachingAllocator.segmentSize(forRounded: (10 << 20) + 512), 12 << 20)
    }

    func testSmallBlocksSplitOneSegment() throws {
        let memory = FakeMemory()
        let allocator = CachingAllocator(source: memory)
        let first = try allocator.allocate(bytes: 1000, stream: streamA)
        let second = try allocator.allocate(bytes: 100, stream: streamA)
        XCTAssertEqual(memory.allocateCalls, 1, "both requests come from one 2 MiB segment")
        XCTAssertEqual(second.address, first.address + 1024, "the second block is carved right after the first")
        XCTAssertEqual(allocator.statistics.allocatedBytes, 1024 + 512)
        XCTAssertEqual(allocator.statistics.reservedBytes, 2 << 20)
        allocator.free(first)
        allocator.free(second)
    }

    func testFreedBlockIsReusedOnSameStreamOnly() throws {
        let memory = FakeMemory()
        let allocator = CachingAllocator(source: memory)
        let block = try allocator.allocate(bytes: 4 << 20, stream: streamA)
        allocator.free(block)
        let again = try allocator.allocate(bytes: 4 << 20, stream: streamA)
        XCTAssertEqual(again.address, block.address)
        XCTAssertEqual(memory.allocateCalls, 1)
        XCTAssertEqual(allocator.statistics.cacheHits, 1)
        let other = try allocator.allocate(bytes: 4 << 20, stream: streamB)
        XCTAssertNotEqual(other.address, block.address, "another stream never receives a block still in stream-ordered use")
        XCTAssertEqual(memory.allocateCalls, 2)
        allocator.free(again)
        allocator.free(other)
    }

    func testFreeMergesNeighboursAndEmptyCacheReleasesSegments() throws {
        let memory = FakeMemory()
        let allocator = CachingAllocator(source: memory)
        let blocks = try (0..<3).map { _ in try allocator.allocate(bytes: 4096, stream: streamA) }
        allocator.free(blocks[0])
        allocator.free(blocks[2])
        try allocator.emptyCache()
        XCTAssertEqual(memory.inUse, 2 << 20, "a segment with a live block stays")
        allocator.free(blocks[1])
        // After merging, the whole segment is one free block again: a request of its full size fits without a new segment.
        let whole = try allocator.allocate(bytes: 1 << 20, stream: streamA)
        XCTAssertEqual(whole.address, blocks[0].address)
        XCTAssertEqual(memory.allocateCalls, 1)
        allocator.free(whole)
        try allocator.emptyCache()
        XCTAssertEqual(memory.inUse, 0)
        XCTAssertEqual(allocator.statistics.reservedBytes, 0)
    }

    func testLargeBlocksSplitOnlyAboveOneMiB() throws {
        let allocator = CachingAllocator(source: FakeMemory())
        let big = try allocator.allocate(bytes: 3 << 20, stream: streamA)      // 20 MiB segment, 17 MiB remainder
        let next = try allocator.allocate(bytes: 2 << 20, stream: streamA)
        XCTAssertEqual(next.address, big.address + UInt64(3 << 20))
        XCTAssertEqual(allocator.statistics.reservedBytes, 20 << 20)
        allocator.free(big)
        allocator.free(next)
    }

    func testStatisticsTrackPeaks() throws {
        let allocator = CachingAllocator(source: FakeMemory())
        let a = try allocator.allocate(bytes: 12 << 20, stream: streamA)
        let b = try allocator.allocate(bytes: 12 << 20, stream: streamA)
        allocator.free(a)
        allocator.free(b)
        let stats = allocator.statistics
        XCTAssertEqual(stats.allocatedBytes, 0)
        XCTAssertEqual(stats.peakAllocatedBytes, 24 << 20)
        XCTAssertEqual(stats.reservedBytes, 24 << 20)
        XCTAssertEqual(stats.peakReservedBytes, 24 << 20)
        XCTAssertEqual(stats.activeAllocations, 0)
        allocator.resetPeakStatistics()
        XCTAssertEqual(allocator.statistics.peakAllocatedBytes, 0)
    }

    func testOutOfMemoryReleasesCacheThenRetries() throws {
        let memory = FakeMemory(capacity: 24 << 20)
        let allocator = CachingAllocator(source: memory)
        allocator.free(try allocator.allocate(bytes: 20 << 20, stream: streamA))
        // Stream B cannot reuse A's cached segment, and the device has no room for a second one:
        // the allocator must give A's segment back and retry.
        let onB = try allocator.allocate(bytes: 20 << 20, stream: streamB)
        XCTAssertEqual(allocator.statistics.reservedBytes, 20 << 20)
        allocator.free(onB)
    }

    func testOutOfMemoryFreesTheCacheRetriesThenReportsLikePyTorch() throws {
        let memory = FakeMemory(capacity: 50 << 20)
        let allocator = CachingAllocator(source: memory)
        let held = try allocator.allocate(bytes: 4 << 20, stream: streamA)
        // 4 MiB in use from a 20 MiB segment (requests under 10 MiB share one), and a cached 12 MiB segment on
        // stream B: the failing request must give it back and retry first.
        allocator.free(try allocator.allocate(bytes: 12 << 20, stream: streamB))
        memory.allocateCalls = 0
        XCTAssertThrowsError(try allocator.allocate(bytes: 40 << 20, stream: streamA)) { error in
            guard case .outOfMemory(let message) = error as? CUDAError else { return XCTFail("\(error)") }
            XCTAssertEqual(memory.allocateCalls, 2, "one try, the cache released, one retry")
            XCTAssertEqual(
                message,
                "CUDA out of memory: tried to allocate 40.00 MiB; fake device has 30.00 MiB free of 50.00 MiB total, "
                    + "20.00 MiB held by the cache (4.00 MiB in use by tensors). " + OutOfMemoryReport.advice)
            for flag in ["--micro-batch-size", "--recompute-activations", "--recompute-granularity",
                         "--use-distributed-optimizer", "--tensor-model-parallel-size"] {
                XCTAssertTrue(message.contains(flag), flag)
            }
        }
        XCTAssertEqual(allocator.statistics.reservedBytes, 20 << 20, "only the live segment is still held")
        allocator.free(held)
    }

    func testOutOfMemoryNamesTheSegmentWhenLargerThanTheRequest() {
        let report = OutOfMemoryReport(requestedBytes: 3 << 20, segmentBytes: 20 << 20, heldBytes: 0, inUseBytes: 0,
                                       capacity: nil)
        XCTAssertTrue(report.description.hasPrefix(
            "CUDA out of memory: tried to allocate 3.00 MiB (a 20.00 MiB segment); 0 B held by the cache (0 B in use by tensors)."),
            report.description)
    }
}
