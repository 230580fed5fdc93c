import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// The kernel catalog of the GPU context training uses, with the test fixture.
enum NeuralFixture {
    static func require() throws -> (GPUFixture, CUDAKernels) {
        let gpu = try GPUFixture.require()
        return (gpu, gpu.kernels)
    }
}

extension KernelElementType {
    /// `value` as stored in this type (round to nearest even), back as Float.
    func round(_ value: Float) -> Float {
        switch self {
        case .float32: return value
        case .bfloat16: return BF16.round(value)
        case .float16: return Float(Float16(value))
        }
    }

    /// ‖gpu − reference‖ / ‖reference‖ bound for outputs computed in fp32 from the same stored
    /// inputs: fp32 arithmetic alone for fp32; for 16-bit outputs the final rounding dominates,
    /// at most half an ulp (2^-9 for bf16, 2^-12 for fp16 relative), with a 2x margin.
    var tolerance: Double {
        switch self {
        case .float32: return 1e-5
        case .bfloat16: return 4e-3
        case .float16: return 1e-3
        }
    }
}

extension GPUFixture {
    /// Uploads `values` stored as `type`.
    func upload(_ values: [Float], as type: KernelElementType) throws -> DeviceAllocation {
        switch type {
        case .float32: return try upload(values)
        case .bfloat16: return try upload(values.map(BF16.bits))
        case .float16: return try upload(values.map { Float16($0).bitPattern })
        }
    }

    /// `count` elements of `type`, read back as Float.
    func download(_ allocation: DeviceAllocation, count: Int, as type: KernelElementType) throws -> [Float] {
        switch type {
        case .float32: return try download(allocation, count: count, as: Float.self)
        case .bfloat16: return try download(allocation, count: count, as: UInt16.self).map(BF16.value)
        case .float16: return try download(allocation, count: count, as: UInt16.self).map { Float(Float16(bitPattern: $0)) }
        }
    }

    /// An output buffer filled with NaN, so an element the kernel never writes fails the comparison.
    func poisoned(_ count: Int, as type: KernelElementType = .float32) throws -> DeviceAllocation {
        try upload([Float](repeating: .nan, count: count), as: type)
    }
}

/// Asserts ‖actual − expected‖ / ‖expected‖ <= tolerance (NaN fails).
func assertClose(_ actual: [Float], _ expected: [Double], _ tolerance: Double, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    let error = relativeError(actual.map(Double.init), expected)
    XCTAssertTrue(error <= tolerance, "\(label): relative error \(error) > \(tolerance)", file: file, line: line)
}

extension SplitMix64 {
    /// `count` uniform values in [low, high) rounded to `type`, so CPU references see what the GPU reads.
    mutating func values(_ count: Int, _ type: KernelElementType, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        floats(count, low, high).map(type.round)
    }
}
