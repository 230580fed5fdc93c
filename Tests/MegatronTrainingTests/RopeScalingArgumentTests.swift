import XCTest
@testable import MegatronCore
@testable import MegatronTraining

/// `--use-rope-scaling` / `--rope-scaling-factor` with Megatron's meaning: Llama 3 frequency scaling by the
/// factor (default 8) with the fixed low / high frequency factors 1 and 4 and original context 8192.
final class RopeScalingArgumentTests: XCTestCase {
    let base = "--lr 1e-3 --train-iters 1 --num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 "
        + "--max-position-embeddings 32 --micro-batch-size 2 --position-embedding-type rope"

    func config(_ line: String) throws -> TransformerConfig {
        let args = try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
        try args.validate()
        return try args.transformerConfig()
    }

    func message(_ line: String) -> String { errorText { _ = try config(line) } }

    func testFlagsSetLlama3ScalingWithMegatronsFixedFactors() throws {
        XCTAssertNil(try config(base).ropeScaling)
        XCTAssertNil(try config(base + " --rope-scaling-factor 16").ropeScaling, "the factor alone scales nothing")
        XCTAssertEqual(try config(base + " --use-rope-scaling").ropeScaling,
                       .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192))
        let scaled = try config(base + " --use-rope-scaling --rope-scaling-factor 32")
        XCTAssertEqual(scaled.ropeScaling, .megatron(factor: 32))
        // Head dim 16 and base 10000 give wavelengths 6.3, 20, 63, 199, 628, 1987 (kept: below 8192 / 4),
        // 6283 (blended) and 19869 (past 8192: stretched by the factor).
        let rope = RotaryEmbedding(kvChannels: scaled.kvChannels, rotaryPercent: 1, base: scaled.rotaryBase, scaling: scaled.ropeScaling)
        let plain = RotaryEmbedding(kvChannels: 16, rotaryPercent: 1, base: 10000).inverseFrequencies
        XCTAssertEqual(Array(rope.inverseFrequencies.prefix(6)), Array(plain.prefix(6)))
        XCTAssertTrue(plain[6] / rope.inverseFrequencies[6] > 1 && plain[6] / rope.inverseFrequencies[6] < 32)
        XCTAssertEqual(plain[7] / rope.inverseFrequencies[7], 32, accuracy: 1e-4)
    }

    func testScalingWithoutRoPEOrWithABadFactorIsRefused() {
        let learned = base.replacingOccurrences(of: "rope", with: "learned_absolute")
        XCTAssertTrue(message(learned + " --use-rope-scaling").contains("--use-rope-scaling"), message(learned + " --use-rope-scaling"))
        XCTAssertTrue(message(learned + " --use-rope-scaling").contains("--position-embedding-type rope"))
        XCTAssertTrue(message(base + " --use-rope-scaling --rope-scaling-factor 0").contains("--rope-scaling-factor"))
        XCTAssertEqual(message(base + " --use-rope-scaling --rope-scaling-factor 8"), "no error")
    }
}
