import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// The widening casts' own loop (cast.cu: 4 elements per access, 4 accesses in flight per thread,
/// one wave of blocks): counts large enough that every thread loops several times, with remainders
/// in the unrolled loop, the single-access loop and the scalar tail; and a misaligned input.
final class WideningCastGPUTests: XCTestCase {
    func testWideningCastsAreExactOverManyGridPasses() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 45)
        // 8 blocks of 256 threads per SM take 4 x 4 elements each per pass: ~4.3M elements on 132 SMs.
        let n = 13_000_007
        let values = random.floats(n, -1000, 1000)
        for type in [KernelElementType.bfloat16, .float16] {
            let narrow = try gpu.upload(values, as: type), wide = try gpu.poisoned(n + 1)
            defer { gpu.free(narrow, wide) }
            let expected = values.map { type.round($0).bitPattern }
            try nn.cast(wide.address, to: .float32, input: narrow.address, from: type, count: n, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(wide, count: n, as: Float.self).map(\.bitPattern), expected, "\(type) -> fp32")
            // One element in: 2-byte aligned only, so the element-by-element loop.
            try nn.cast(wide.address, to: .float32, input: narrow.address + 2, from: type, count: n - 1, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(wide, count: n - 1, as: Float.self).map(\.bitPattern), Array(expected.dropFirst()),
                           "\(type) -> fp32 from a misaligned input")
        }
    }
}
