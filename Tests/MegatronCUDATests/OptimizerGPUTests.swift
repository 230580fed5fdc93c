import Foundation
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// The multi-tensor global gradient norm against a float64 CPU reference. The multi-tensor AdamW kernel is
/// checked against torch's golden numbers through the optimizer (MegatronCoreTests.OptimizerStepGoldenTests).
final class OptimizerGPUTests: XCTestCase {
    func testGradNormOverManyTensorsIsDeterministicAndFlagsNonFinite() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 52)
        let counts = [1, 1000, 1_000_003, 77, 65_536]
        let values = counts.map { random.floats($0, -2, 2) }
        let buffers = try values.map { try gpu.upload($0) }
        defer { buffers.forEach(gpu.allocator.free) }
        let words = CUDAKernels.normTable(zip(buffers, counts).map { ($0.address, $1) })
        let table = try gpu.upload(words)
        let device = DeviceTensorTable(address: table.address, tensorCount: counts.count, largestCount: counts.max()!)
        let scratch = try gpu.poisoned(nn.gradNormScratchCount(device)), out = try gpu.poisoned(2)
        defer { gpu.free(table, scratch, out) }
        try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
        let result = try gpu.download(out, count: 2, as: Float.self)
        let reference = values.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(Double(result[0]), reference, accuracy: 1e-5 * reference)
        XCTAssertEqual(result[1], 0)
        try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
        XCTAssertEqual(try gpu.download(out, count: 2, as: Float.self).map(\.bitPattern), result.map(\.bitPattern), "deterministic")

        for bad in [Float.nan, .infinity] {
            try gpu.staging.copyToDevice([bad], to: buffers[2].address + 4 * 123_457, stream: gpu.stream)
            try nn.gradNorm(out.address, table: device, scratch: scratch.address, stream: gpu.stream)
            let flagged = try gpu.download(out, count: 2, as: Float.self)
            XCTAssertEqual(flagged[1], 1, "\(bad) is flagged")
            XCTAssertFalse(flagged[0].isFinite, "\(bad) makes the norm non-finite")
        }
    }
}
