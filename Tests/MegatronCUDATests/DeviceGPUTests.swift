import XCTest
@testable import MegatronCUDA

/// Device, streams, events and device memory on a real GPU (skipped without one).
final class DeviceGPUTests: XCTestCase {
    func testPropertiesAreRead() throws {
        let gpu = try GPUFixture.require()
        let p = gpu.device.properties
        XCTAssertFalse(p.name.isEmpty)
        XCTAssertGreaterThan(p.multiprocessorCount, 0)
        XCTAssertGreaterThanOrEqual(p.computeCapability.major, 7)
        XCTAssertGreaterThan(p.totalMemoryBytes, 1 << 30)
        XCTAssertGreaterThan(p.l2CacheBytes, 0)
        if p.name.contains("H100") || p.name.contains("H200") {
            XCTAssertEqual(p.architecture, "sm_90a")
            XCTAssertEqual(p.multiprocessorCount, 132)
        }
        let info = try gpu.device.memoryInfo()
        XCTAssertLessThanOrEqual(info.free, info.total)
        print("device: \(p.name), \(p.multiprocessorCount) SMs, cc \(p.computeCapability), \(formatBytes(p.totalMemoryBytes)), L2 \(formatBytes(p.l2CacheBytes))")
    }

    func testEventsTimeWorkOnAStream() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        let count = 64 << 20
        let buffer = try gpu.allocator.allocate(bytes: count * 4, stream: gpu.stream.allocatorKey)
        defer { gpu.free(buffer) }
        let start = try CUDAEvent(device: gpu.device), end = try CUDAEvent(device: gpu.device)
        try start.record(on: gpu.stream)
        for _ in 0..<10 { try kernels.fill(buffer.address, count: count, value: 1, type: .float32, stream: gpu.stream) }
        try end.record(on: gpu.stream)
        try end.synchronize()
        XCTAssertTrue(try end.isComplete())
        let ms = try end.elapsedMilliseconds(since: start)
        XCTAssertGreaterThan(ms, 0)
        // 2.5 GiB written: even at 4 TB/s that is over 0.5 ms, and no sane device takes a second.
        XCTAssertGreaterThan(ms, 0.5)
        XCTAssertLessThan(ms, 1000)
    }

    func testStreamsOrderedByEvents() throws {
        let gpu = try GPUFixture.require()
        let kernels = gpu.kernels
        let other = try CUDAStream(device: gpu.device)
        let count = 1 << 20
        let buffer = try gpu.allocator.allocate(bytes: count * 4, stream: gpu.stream.allocatorKey)
        defer { gpu.free(buffer) }
        try kernels.fill(buffer.address, count: count, value: 3, type: .float32, stream: gpu.stream)
        let done = try CUDAEvent(device: gpu.device, timing: false)
        try done.record(on: gpu.stream)
        try other.wait(for: done)
        try kernels.axpby(buffer.address, buffer.address, buffer.address, alpha: 2, beta: 0, count: count, type: .float32, stream: other)
        try other.synchronize()
        let values: [Float] = try gpu.download(buffer, count: count)
        XCTAssertEqual(Set(values), [6])
    }

    func testAllocatorOnDeviceMemory() throws {
        let gpu = try GPUFixture.require()
        let allocator = CachingAllocator(source: DriverMemorySource(device: gpu.device))
        let key = gpu.stream.allocatorKey
        let a = try allocator.allocate(bytes: 1000, stream: key)
        let b = try allocator.allocate(bytes: 3000, stream: key)
        XCTAssertEqual(b.address, a.address + 1024, "split from one small segment")
        XCTAssertEqual(a.address % 512, 0)
        let values: [Float] = (0..<750).map(Float.init)
        try gpu.staging.copyToDevice(values, to: b.address, stream: gpu.stream)
        XCTAssertEqual(try gpu.staging.copyToHost(from: b.address, count: 750, stream: gpu.stream) as [Float], values)
        allocator.free(a)
        let reused = try allocator.allocate(bytes: 512, stream: key)
        XCTAssertEqual(reused.address, a.address, "freed block reused on the same stream without synchronization")
        let large = try allocator.allocate(bytes: 64 << 20, stream: key)
        var stats = allocator.statistics
        XCTAssertEqual(stats.allocatedBytes, 512 + 3072 + (64 << 20))
        XCTAssertEqual(stats.reservedBytes, (2 << 20) + (64 << 20))
        XCTAssertEqual(stats.deviceAllocations, 2)
        allocator.free(large)
        allocator.free(b)
        allocator.free(reused)
        try allocator.emptyCache()
        stats = allocator.statistics
        XCTAssertEqual(stats.reservedBytes, 0)
        XCTAssertEqual(stats.peakAllocatedBytes, 512 + 3072 + (64 << 20))
    }

    func testOutOfMemoryOnDevice() throws {
        let gpu = try GPUFixture.require()
        let allocator = CachingAllocator(source: DriverMemorySource(device: gpu.device))
        XCTAssertThrowsError(try allocator.allocate(bytes: 1 << 50, stream: gpu.stream.allocatorKey)) { error in
            guard case .outOfMemory(let message) = error as? CUDAError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("tried to allocate 1024.00 TiB"), message)
            XCTAssertTrue(message.contains(gpu.device.properties.name), message)
            print("out-of-memory message: \(message)")
        }
    }
}
