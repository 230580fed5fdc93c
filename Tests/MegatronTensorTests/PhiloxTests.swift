import XCTest
@testable import MegatronTensor

final class PhiloxTests: XCTestCase {
    func testKnownAnswerVectorsOfRandom123() {
        let zero = Philox.block(counter: (0, 0, 0, 0), key: (0, 0))
        XCTAssertEqual([zero.0, zero.1, zero.2, zero.3], [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8])
        let ones = Philox.block(counter: (.max, .max, .max, .max), key: (.max, .max))
        XCTAssertEqual([ones.0, ones.1, ones.2, ones.3], [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD])
        let pi = Philox.block(counter: (0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344),
                              key: (0xA409_3822, 0x299F_31D0))
        XCTAssertEqual([pi.0, pi.1, pi.2, pi.3], [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1])
    }

    func testSeededDrawsRepeatAndDiffer() {
        let a = Tensor.normal([1000], generator: PhiloxGenerator(seed: 7)).floats()
        let b = Tensor.normal([1000], generator: PhiloxGenerator(seed: 7)).floats()
        let gen = PhiloxGenerator(seed: 7)
        _ = Tensor.normal([10], generator: gen)
        let c = Tensor.normal([1000], generator: gen).floats()
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testDistributionsHaveTheirMoments() {
        let n = 200_000
        let normal = Tensor.normal([n], mean: 1, std: 2, generator: PhiloxGenerator(seed: 3)).floats()
        let mean = normal.reduce(0, +) / Float(n)
        let variance = normal.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n)
        XCTAssertEqual(mean, 1, accuracy: 0.02)
        XCTAssertEqual(variance.squareRoot(), 2, accuracy: 0.02)
        let uniform = Tensor.uniform([n], low: -1, high: 3, generator: PhiloxGenerator(seed: 4)).floats()
        XCTAssertGreaterThanOrEqual(uniform.min()!, -1)
        XCTAssertLessThan(uniform.max()!, 3)
        XCTAssertEqual(uniform.reduce(0, +) / Float(n), 1, accuracy: 0.02)
    }
}
