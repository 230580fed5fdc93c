import XCTest
import MegatronCore
@testable import MegatronTraining

/// The `--fp8-*` flags as Megatron reads them, and the errors, each naming its flag.
final class FP8ArgumentTests: XCTestCase {
    static let base = "--num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 1 --train-iters 2 --lr 1e-4 "

    func recipe(_ flags: String) throws -> FP8Recipe? {
        let arguments = try MegatronArgumentParser.parse((Self.base + flags).split(separator: " ").map(String.init))
        try arguments.validate()
        return try arguments.fp8TrainingRecipe()
    }

    func message(_ flags: String) -> String {
        do {
            _ = try recipe(flags)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testMegatronDefaults() throws {
        XCTAssertNil(try recipe("--fp8-recipe tensorwise --fp8-margin 2"), "no FP8 without --fp8-format, the other flags unused")
        let r = try XCTUnwrap(try recipe("--fp8-format hybrid"))
        XCTAssertEqual(r.format, .hybrid)
        XCTAssertEqual(r.scaling, .delayed)
        XCTAssertEqual(r.margin, 0)
        XCTAssertEqual(r.amaxHistoryLength, 1)
        XCTAssertEqual(r.amaxComputeAlgo, .mostRecent)
        XCTAssertTrue(r.fp8WeightGradient)
        XCTAssertEqual(r.gradientDType, .float8E5M2)
        XCTAssertEqual(try recipe("--fp8-format e4m3")?.gradientDType, .float8E4M3)
    }

    func testEveryFlagIsRead() throws {
        let r = try XCTUnwrap(try recipe("--fp8-format e4m3 --fp8-recipe tensorwise --fp8-margin 3 --fp8-amax-history-len 16 "
            + "--fp8-amax-compute-algo max --no-fp8-wgrad --first-last-layers-bf16 --num-layers-at-start-in-bf16 2 "
            + "--num-layers-at-end-in-bf16 0"))
        XCTAssertEqual(r.scaling, .tensorwise)
        XCTAssertEqual(r.margin, 3)
        XCTAssertEqual(r.amaxHistoryLength, 16)
        XCTAssertEqual(r.amaxComputeAlgo, .max)
        XCTAssertFalse(r.fp8WeightGradient)
        XCTAssertEqual([r.highPrecisionLayersAtStart, r.highPrecisionLayersAtEnd], [2, 0])
        XCTAssertEqual((0..<4).map { r.runsInFP8(layer: $0, of: 4) }, [false, false, true, true])
        let defaults = try XCTUnwrap(try recipe("--fp8-format hybrid --fp8-recipe tensorwise --first-last-layers-bf16"))
        XCTAssertEqual((0..<4).map { defaults.runsInFP8(layer: $0, of: 4) }, [false, true, true, false])
    }

    func testErrorsNameTheFlag() {
        XCTAssertEqual(message("--fp8-format e5m2"), "--fp8-format must be one of e4m3, hybrid, got 'e5m2'")
        XCTAssertTrue(message("--fp8-format hybrid --fp8-recipe mxfp8").contains("--fp8-recipe mxfp8"), message("--fp8-format hybrid --fp8-recipe mxfp8"))
        XCTAssertTrue(message("--fp8-format hybrid --fp8-recipe mxfp8").contains("Blackwell"))
        XCTAssertTrue(message("--fp8-format hybrid --fp8-recipe blockwise").contains("--fp8-recipe blockwise"))
        XCTAssertEqual(message("--fp8-format hybrid --fp8-recipe fast"),
                       "--fp8-recipe must be one of delayed, tensorwise, got 'fast'")
        XCTAssertEqual(message("--fp8-format hybrid --fp8-amax-history-len 0"), "--fp8-amax-history-len must be at least 1, got 0")
        XCTAssertEqual(message("--fp8-format hybrid --fp8-amax-compute-algo mean"),
                       "--fp8-amax-compute-algo must be one of max, most_recent, got 'mean'")
        XCTAssertTrue(message("--fp8-format hybrid --first-last-layers-bf16").hasPrefix(
            "--first-last-layers-bf16 does not work with --fp8-recipe delayed"))
        XCTAssertEqual(message("--fp8-format hybrid --fp8-recipe tensorwise --first-last-layers-bf16 --num-layers-at-end-in-bf16 5"),
                       "--num-layers-at-end-in-bf16 (5) must be between 0 and the layers per pipeline stage (4)")
        XCTAssertTrue(message("--fp8-format hybrid --fp8-param-gather").contains("FP8: --fp8-param-gather"),
                      message("--fp8-format hybrid --fp8-param-gather"))
    }
}
