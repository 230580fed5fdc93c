import XCTest
import Foundation
import MegatronCore
import MegatronTensor
@testable import MegatronTraining

/// gpt-oss's flags read as Megatron reads them: what each sets in the model configuration, and what it refuses.
final class GptOssArgumentTests: XCTestCase {
    let base = "--lr 1e-3 --train-iters 1 --num-layers 4 --hidden-size 64 --num-attention-heads 4 --seq-length 32 "
        + "--max-position-embeddings 32 --micro-batch-size 2 --position-embedding-type rope "

    func config(_ line: String) throws -> TransformerConfig {
        let args = try MegatronArgumentParser.parse((base + line).split(separator: " ").map(String.init))
        try args.validate()
        return try args.transformerConfig()
    }

    func message(_ line: String) -> String { errorText { _ = try config(line) } }

    func testExampleFlagsSetTheModel() throws {
        let c = try config("--rope-type rope --quick-geglu --glu-linear-offset 1.0 --activation-func-clamp-value 7.0 "
            + "--softmax-type learnable --window-size 127,0 --window-attn-skip-freq 2 --export-force-local-attention --enable-gpt-oss")
        XCTAssertTrue(c.gatedLinearUnit)
        XCTAssertEqual(c.gatedUnit, GatedLinearUnit(gate: .quickGelu, linearOffset: 1, clampValue: 7))
        XCTAssertEqual(c.softmaxType, .learnable)
        XCTAssertEqual((1...4).map { c.slidingWindow(layerNumber: $0) }, [127, nil, 127, nil], "every second layer is full")
        XCTAssertNil(c.yarn, "--enable-gpt-oss changes nothing outside ModelOpt's builder")
        XCTAssertEqual(c.ffnHiddenSize, 256, "quick GeGLU keeps the 4h default")
    }

    func testWindowPatternsAndUnlimitedWindows() throws {
        let listed = try config("--window-size (5,0) --window-attn-skip-freq ([1]*3+[0])")
        XCTAssertEqual((1...4).map { listed.slidingWindow(layerNumber: $0) }, [5, 5, 5, nil])
        XCTAssertEqual(try LayerPatternExpression.evaluate("([1]*3+[0]*1)*2", flag: "--window-attn-skip-freq"), .list([1, 1, 1, 0, 1, 1, 1, 0]))
        XCTAssertEqual(try LayerPatternExpression.evaluate("2*[0, 1,]", flag: "--window-attn-skip-freq"), .list([0, 1, 0, 1]))
        XCTAssertNil(try config("--window-size -1,0").slidingWindow, "-1: unlimited")
        XCTAssertNil(try config("--window-attn-skip-freq 2").slidingWindow(layerNumber: 1), "no window without --window-size")
        XCTAssertTrue(message("--window-size 8,2").contains("causal"))
        XCTAssertTrue(message("--window-size 8").contains("--window-size"))
        XCTAssertTrue(message("--window-size 8,0 --window-attn-skip-freq [1,0]").contains("--num-layers 4"))
        XCTAssertTrue(message("--window-size 8,0 --window-attn-skip-freq [1,0]+1").contains("joins two lists"))
    }

    func testYaRNTakesMegatronsDefaultsAndItsFlags() throws {
        let defaults = try XCTUnwrap(config("--position-embedding-type yarn").yarn)
        XCTAssertEqual(defaults, YarnScaling())
        XCTAssertEqual(defaults.originalMaxPositionEmbeddings, 4096)
        let given = try XCTUnwrap(config("--position-embedding-type yarn --rotary-scaling-factor 32 "
            + "--yarn-original-max-position-embeddings 131072 --yarn-beta-fast 16 --yarn-beta-slow 2 --mscale 0.7 "
            + "--mscale-all-dim 0.5 --no-yarn-correction-range-round-to-int").yarn)
        XCTAssertEqual(given, YarnScaling(factor: 32, originalMaxPositionEmbeddings: 131072, betaFast: 16, betaSlow: 2, mscale: 0.7,
                                          mscaleAllDim: 0.5, correctionRangeRoundToInt: false))
        let ln32 = Float(Foundation.log(32.0))
        let expected: Float = (0.07 * ln32 + 1) / (0.05 * ln32 + 1)
        XCTAssertEqual(given.concentrationFactor, expected, accuracy: 1e-6)
        XCTAssertNil(try config("--rotary-scaling-factor 40 --mscale 0.7").yarn, "YaRN's settings act with yarn positions only")
    }

    func testMegatronsRefusals() {
        XCTAssertTrue(message("--rope-type yarn").contains("--position-embedding-type yarn"))
        XCTAssertTrue(message("--swiglu --activation-func-clamp-value 7").contains("mixture of experts"))
        XCTAssertTrue(message("--quick-geglu --swiglu").contains("--quick-geglu"))
        XCTAssertTrue(message("--glu-linear-offset 1").contains("--glu-linear-offset"))
        XCTAssertTrue(message("--softmax-type learnable --init-method-xavier-uniform").contains("xavier"))
        XCTAssertTrue(message("--quick-geglu --activation-func-clamp-value -1").contains("positive"))
    }
}
