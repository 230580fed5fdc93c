import XCTest
import MegatronCore
@testable import MegatronTraining

/// `--experimental-attention-variant gated_delta_net`, the `--linear-*` flags and `--attention-output-gate`: the
/// layer pattern and sizes they give, and Megatron's checks.
final class GatedDeltaNetArgumentTests: XCTestCase {
    let base = "--lr 1e-3 --train-iters 1 --num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 "
        + "--max-position-embeddings 32 --micro-batch-size 2 "
    let gdn = "--experimental-attention-variant gated_delta_net --linear-key-head-dim 8 --linear-value-head-dim 16 "
        + "--linear-num-key-heads 2 --linear-num-value-heads 4 --linear-conv-kernel-dim 3 "

    func config(_ line: String) throws -> TransformerConfig { try validatedConfig(line) }
    func message(_ line: String) -> String { errorText { _ = try validatedConfig(line) } }

    func testIntegerFrequencyMakesEveryNthLayerAttention() throws {
        let c = try config(base + gdn + "--linear-attention-freq 2 --attention-output-gate")
        XCTAssertEqual(c.gatedDeltaNet, GatedDeltaNetConfig(layers: [true, false, true, false], convKernelDim: 3, keyHeadDim: 8,
                                                            valueHeadDim: 16, numKeyHeads: 2, numValueHeads: 4))
        XCTAssertTrue(c.attentionOutputGate)
        XCTAssertEqual(try config(base + gdn + "--linear-attention-freq 4").gatedDeltaNet?.layers, [true, true, true, false])
        XCTAssertNil(try config(base + "--linear-attention-freq 2").gatedDeltaNet, "the pattern alone changes nothing, as in Megatron")
    }

    func testListPatternsAreEvaluatedAsPythonWould() throws {
        XCTAssertEqual(try config(base + gdn + "--linear-attention-freq ([1]*3+[0]*1)").gatedDeltaNet?.layers, [true, true, true, false])
        XCTAssertEqual(try config(base + gdn + "--linear-attention-freq [0]+[1]*3").gatedDeltaNet?.layers, [false, true, true, true])
        XCTAssertEqual(try LayerPatternExpression.evaluate("([1]*3+[0]*2)*2", flag: "f"), .list([1, 1, 1, 0, 0, 1, 1, 1, 0, 0]))
        XCTAssertEqual(try LayerPatternExpression.evaluate("2*[1, 0]", flag: "f"), .list([1, 0, 1, 0]))
        XCTAssertEqual(try LayerPatternExpression.evaluate(" 3 ", flag: "f"), .int(3))
        for bad in ["[1,", "([1]*2", "[1]+2", "[1]*[2]", "x"] {
            XCTAssertThrowsError(try LayerPatternExpression.evaluate(bad, flag: "--linear-attention-freq"), bad) {
                XCTAssertTrue("\($0)".contains("--linear-attention-freq '\(bad)'"), "\($0)")
            }
        }
    }

    func testMegatronsChecksAreErrorsNamingTheFlags() {
        XCTAssertTrue(message(base + gdn).contains("needs --linear-attention-freq"), message(base + gdn))
        XCTAssertEqual(message(base + gdn + "--linear-attention-freq [1,0]"),
                       "--linear-attention-freq gives 2 layers, but --num-layers is 4")
        XCTAssertTrue(message(base + gdn + "--linear-attention-freq [1,2,0,1]").contains("1 (Gated DeltaNet) or 0 (attention)"))
        XCTAssertEqual(message(base + gdn + "--linear-attention-freq 0"), "--linear-attention-freq must be positive, got 0")
        XCTAssertEqual(message(base + gdn + "--linear-attention-freq 2 --linear-num-value-heads 3"),
                       "--linear-num-value-heads (3) must be a multiple of --linear-num-key-heads (2)")
        XCTAssertEqual(message(base + gdn + "--linear-attention-freq 2 --tensor-model-parallel-size 4"),
                       "--linear-num-key-heads (2) must be divisible by --tensor-model-parallel-size (4)")
        XCTAssertEqual(message(base + gdn + "--linear-attention-freq 2 --linear-conv-kernel-dim 0"),
                       "--linear-conv-kernel-dim must be positive, got 0")
    }

    /// Megatron's other variants (gdn2, dsa) are features this build lacks, refused as such.
    func testOtherVariantsAreRefusedAsMissingFeatures() {
        let text = message(base + "--experimental-attention-variant gdn2 --linear-attention-freq 2")
        XCTAssertTrue(text.contains("--experimental-attention-variant gdn2"), text)
        XCTAssertNotNil(try? config(base + gdn.replacingOccurrences(of: "gated_delta_net", with: "gdn") + "--linear-attention-freq 2"))
    }
}
