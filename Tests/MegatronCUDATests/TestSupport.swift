import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTensor

/// The device, stream, allocator, staging pool and kernel catalog of the GPU context training uses
/// (`CUDAContext`), shared by every GPU test of the process, or the reason there is none (tests then skip with it).
final class GPUFixture {
    let device: CUDADevice
    let stream: CUDAStream
    let allocator: CachingAllocator
    let staging: PinnedStaging
    let kernels: CUDAKernels

    private static let shared: Result<GPUFixture, Error> = Result {
        let environment = ProcessInfo.processInfo.environment
        return GPUFixture(try CUDAContext.shared(ordinal: try CUDADevice.ordinal(index: nil, environment: environment)))
    }

    private init(_ context: CUDAContext) {
        (device, stream, allocator, staging, kernels) = (context.device, context.stream, context.allocator, context.staging,
                                                         context.kernels)
    }

    /// The fixture, or an XCTSkip naming why this machine cannot run GPU tests.
    static func require() throws -> GPUFixture {
        switch shared {
        case .success(let fixture): return fixture
        case .failure(let error): throw XCTSkip("GPU test skipped, no usable CUDA device: \(error)")
        }
    }

    /// Uploads `values` into a fresh allocation.
    func upload<T>(_ values: [T]) throws -> DeviceAllocation {
        let allocation = try allocator.allocate(bytes: values.count * MemoryLayout<T>.stride, stream: stream.allocatorKey)
        try staging.copyToDevice(values, to: allocation.address, stream: stream)
        return allocation
    }

    func download<T>(_ allocation: DeviceAllocation, count: Int, as type: T.Type = T.self) throws -> [T] {
        try staging.copyToHost(from: allocation.address, count: count, stream: stream)
    }

    func free(_ allocations: DeviceAllocation...) {
        allocations.forEach(allocator.free)
    }
}

/// bfloat16 bits <-> Float, round to nearest even (the reference the GPU results are checked against).
enum BF16 {
    static func bits(_ value: Float) -> UInt16 {
        let u = value.bitPattern
        if value.isNaN { return UInt16(u >> 16) | 0x40 }
        return UInt16((u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
    }

    static func value(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    static func round(_ value: Float) -> Float { Self.value(bits(value)) }
}
