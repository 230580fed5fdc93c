import XCTest
@testable import MegatronTraining

final class ArgumentTests: XCTestCase {
    func parse(_ line: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
    }

    func message(_ line: String) -> String {
        do {
            let args = try parse(line)
            try args.validate()
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testMegatronFlagsSetFields() throws {
        let a = try parse("--num-layers 24 --hidden-size=2048 --num-attention-heads 16 --swiglu --disable-bias-linear --lr 3e-4 --train-iters 10 --normalization RMSNorm --bf16")
        XCTAssertEqual(a.numLayers, 24)
        XCTAssertEqual(a.hiddenSize, 2048)
        XCTAssertTrue(a.swiglu)
        XCTAssertFalse(a.addBiasLinear)
        XCTAssertEqual(a.lr, 3e-4)
        XCTAssertTrue(a.bf16)
        let config = try a.transformerConfig()
        XCTAssertEqual(config.ffnHiddenSize, 5440, "int(8h/3/64)*64 with --swiglu")
        XCTAssertEqual(config.normalization, .rmsNorm)
        XCTAssertEqual(config.paramsDType, .bfloat16)
    }

    func testNoFlagsGiveTheEmbeddedDefault() throws {
        XCTAssertEqual(try MegatronArgumentParser.parse([]), PretrainArguments.embeddedDefault)
        XCTAssertNoThrow(try PretrainArguments.embeddedDefault.validate())
    }

    func testUnsupportedMegatronFlagIsRefusedByName() {
        XCTAssertEqual(message("--num-experts 8"), "--num-experts is a Megatron-LM flag that pretrain-gpt does not support yet")
    }

    /// Parallel layouts that cannot work stop before any work, naming the flags at fault.
    func testImpossibleParallelSettingsAreRefused() {
        let base = "--lr 1e-3 --train-iters 1 --num-layers 2 --hidden-size 64 --num-attention-heads 6"
        XCTAssertEqual(message(base + " --tensor-model-parallel-size 4"),
                       "--num-attention-heads (6) must be divisible by --tensor-model-parallel-size (4)")
        XCTAssertEqual(message(base + " --pipeline-model-parallel-size 2"),
                       "--pipeline-model-parallel-size 2: pipeline parallelism is not implemented yet")
        XCTAssertEqual(message(base + " --overlap-param-gather"), "--overlap-param-gather needs --use-distributed-optimizer")
        XCTAssertEqual(message(base + " --tensor-model-parallel-size 0"), "--tensor-model-parallel-size must be at least 1, got 0")
    }

    func testMisspellingGetsNearestSpellings() {
        let m = message("--num-layer 2")
        XCTAssertTrue(m.hasPrefix("unknown flag --num-layer; did you mean --num-layers"), m)
    }

    func testInconsistentValuesStopBeforeWork() {
        XCTAssertEqual(message("--lr 1e-3 --train-iters 5 --micro-batch-size 4 --global-batch-size 10"),
                       "--global-batch-size (10) must be a multiple of --micro-batch-size (4) x data-parallel size (1)")
        XCTAssertTrue(message("--lr 1e-3 --train-iters 5 --hidden-size 100 --num-attention-heads 3").contains("divisible by --num-attention-heads"))
        XCTAssertEqual(message("--train-iters 5"), "--lr is required")
        XCTAssertEqual(message("--lr 1e-3 --train-iters 5 --bf16 --fp16"), "--bf16 and --fp16 cannot both be set")
        XCTAssertEqual(message("--lr 1e-3 --train-iters x"), "--train-iters needs an integer, got 'x'")
        XCTAssertEqual(message("--lr 1e-3 --train-iters 5 --normalization BatchNorm"),
                       "--normalization must be one of LayerNorm, RMSNorm, got 'BatchNorm'")
        XCTAssertEqual(message("--lr"), "--lr needs a value")
        XCTAssertEqual(message("--lr 1 --train-iters 5 --seq-length 64 --max-position-embeddings 32"),
                       "--seq-length (64) exceeds --max-position-embeddings (32)")
    }
}
