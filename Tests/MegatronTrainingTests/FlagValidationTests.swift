import XCTest
@testable import MegatronTraining

/// Flag values that cannot work stop in `validate()`, before any work, with a message naming the flag and the
/// value; values at the edge of their range pass.
final class FlagValidationTests: XCTestCase {
    private let base = ["--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4", "--seq-length", "16",
                        "--max-position-embeddings", "16", "--micro-batch-size", "2", "--train-iters", "10", "--lr", "1e-3"]

    private func message(_ flags: String, dataParallelSize: Int = 1) -> String {
        errorText {
            let arguments = try MegatronArgumentParser.parse(base + flags.split(separator: " ").map(String.init))
            try arguments.validate(dataParallelSize: dataParallelSize)
        }
    }

    private func assertRefused(_ cases: [(String, String)], file: StaticString = #filePath, line: UInt = #line) {
        for (flags, expected) in cases {
            XCTAssertEqual(message(flags), expected, flags, file: file, line: line)
        }
    }

    func testSizesCountsAndIntervalsMustBePositive() {
        assertRefused([
            ("--num-layers 0", "--num-layers must be a positive integer, got 0"),
            ("--hidden-size -8", "--hidden-size must be a positive integer, got -8"),
            ("--num-attention-heads 0", "--num-attention-heads must be a positive integer, got 0"),
            ("--seq-length 0", "--seq-length must be a positive integer, got 0"),
            ("--ffn-hidden-size 0", "--ffn-hidden-size must be a positive integer, got 0"),
            ("--kv-channels 0", "--kv-channels must be a positive integer, got 0"),
            ("--group-query-attention --num-query-groups 0", "--num-query-groups must be a positive integer, got 0"),
            ("--micro-batch-size 0", "--micro-batch-size must be a positive integer, got 0"),
            ("--global-batch-size 0", "--global-batch-size must be a positive integer, got 0"),
            ("--train-iters 0", "--train-iters must be a positive integer, got 0"),
            ("--eval-interval 0", "--eval-interval must be a positive integer, got 0"),
            ("--log-interval 0", "--log-interval must be a positive integer, got 0"),
            ("--save-interval 0", "--save-interval must be a positive integer, got 0"),
            ("--exit-interval 0", "--exit-interval must be a positive integer, got 0"),
            ("--vocab-size 0", "--vocab-size must be a positive integer, got 0"),
            ("--make-vocab-size-divisible-by 0", "--make-vocab-size-divisible-by must be a positive integer, got 0"),
            ("--lr-decay-iters 0", "--lr-decay-iters must be a positive integer, got 0"),
            ("--max-position-embeddings 0", "--max-position-embeddings must be a positive integer, got 0"),
            ("--eval-iters -1", "--eval-iters must be a non-negative integer, got -1"),
            ("--seed -1", "--seed must be a non-negative integer, got -1"),
        ])
    }

    func testRatesAndCoefficientsMustBeInRange() {
        assertRefused([
            ("--lr -0.1", "--lr must be >= 0, got -0.1"),
            ("--min-lr -1", "--min-lr must be >= 0, got -1.0"),
            ("--clip-grad -1", "--clip-grad must be >= 0, got -1.0"),
            ("--weight-decay -0.5", "--weight-decay must be >= 0, got -0.5"),
            ("--init-method-std -0.02", "--init-method-std must be >= 0, got -0.02"),
            ("--hidden-dropout 1", "--hidden-dropout must be in [0, 1), got 1.0"),
            ("--attention-dropout -0.1", "--attention-dropout must be in [0, 1), got -0.1"),
            ("--adam-beta1 1", "--adam-beta1 must be in [0, 1), got 1.0"),
            ("--adam-beta2 -0.9", "--adam-beta2 must be in [0, 1), got -0.9"),
            ("--adam-eps 0", "--adam-eps must be > 0, got 0.0"),
            ("--rotary-base 0", "--rotary-base must be > 0, got 0.0"),
            ("--rotary-percent 1.5", "--rotary-percent must be in (0, 1], got 1.5"),
            ("--lr-warmup-fraction 1", "--lr-warmup-fraction must be in [0, 1), got 1.0"),
        ])
        XCTAssertEqual(message("--hidden-dropout 0 --attention-dropout 0.99 --adam-beta1 0 --clip-grad 0 --lr 0"), "no error")
    }

    func testModelShapesMustFitTogether() {
        assertRefused([
            ("--hidden-size 30", "--hidden-size (30) must be divisible by --num-attention-heads (4), or give the head size with --kv-channels"),
            ("--group-query-attention --num-query-groups 3", "--num-attention-heads (4) must be divisible by --num-query-groups (3)"),
            ("--recompute-granularity full --recompute-method block --recompute-num-layers 3",
             "--recompute-num-layers (3) must be between 1 and --num-layers (2)"),
            ("--position-embedding-type rope --hidden-size 36",
             "--position-embedding-type rope rotates pairs of channels, but the head size 9 x --rotary-percent 1.0 gives 9"),
            ("--swiglu --hidden-size 16",
             "the default --ffn-hidden-size with --swiglu, int(8 x --hidden-size 16 / 3 / 64) x 64, is 0 for so small a model; give --ffn-hidden-size"),
        ])
        XCTAssertEqual(message("--hidden-size 30 --kv-channels 8"), "no error", "--kv-channels frees the head size")
    }

    func testTensorParallelDivisibility() {
        assertRefused([
            ("--tensor-model-parallel-size 2 --ffn-hidden-size 33",
             "--ffn-hidden-size (33) must be divisible by --tensor-model-parallel-size (2)"),
            ("--tensor-model-parallel-size 2 --sequence-parallel --seq-length 15",
             "--seq-length (15) must be divisible by --tensor-model-parallel-size (2) with --sequence-parallel: each rank keeps 1/2 of the sequence"),
        ])
        XCTAssertEqual(message("--tensor-model-parallel-size 2 --seq-length 15"), "no error", "no sequence split without --sequence-parallel")
    }

    func testScheduleIsCheckedInTheFlagsOwnUnits() throws {
        assertRefused([
            ("--lr-warmup-iters 10", "--lr-warmup-iters (10) must be less than the lr decay length, --train-iters (10)"),
            ("--lr-warmup-iters 5 --lr-decay-iters 4", "--lr-warmup-iters (5) must be less than --lr-decay-iters (4)"),
            ("--lr-decay-style WSD --lr-wsd-decay-iters 11", "--lr-wsd-decay-iters (11) must not exceed the lr decay length, --train-iters (10)"),
        ])
        XCTAssertEqual(message("--lr-warmup-iters 9 --lr-decay-iters 20"), "no error")
        var samples = try MegatronArgumentParser.parse(base + ["--train-samples", "40", "--lr-warmup-samples", "50"])
        samples.trainIters = nil
        XCTAssertThrowsError(try samples.validate()) {
            XCTAssertEqual("\($0)", "--lr-warmup-samples (50) must be less than the lr decay length, --train-samples (40)")
        }
        XCTAssertEqual(message("--min-lr 0.1"), "--min-lr (0.1) must not exceed --lr (0.001)")
        XCTAssertEqual(message("--lr-decay-style WSD"), "--lr-decay-style WSD needs --lr-wsd-decay-iters or --lr-wsd-decay-samples",
                       "the scheduler's own checks, before the model is built")
    }

    func testSequenceLongerThanTheEmbeddedCorpusIsRefused() {
        let longest = EmbeddedCorpus(seed: 1234).longestSequence
        XCTAssertGreaterThan(longest, 1000)
        let flags = "--max-position-embeddings \(longest + 1) --seq-length"
        XCTAssertEqual(message("\(flags) \(longest)"), "no error")
        XCTAssertEqual(message("\(flags) \(longest + 1)"),
                       "--seq-length \(longest + 1) is longer than the built-in corpus allows (at most \(longest) tokens, its "
                           + "validation split less one); use a shorter --seq-length or train on your data with --data-path (or --mock-data)")
    }

    func testDefaultGlobalBatchIsOneMicroBatchPerDataParallelRank() throws {
        let arguments = try MegatronArgumentParser.parse(base)
        XCTAssertEqual(try TrainingSchedule(arguments, groups: [], dataParallelSize: 4).globalBatchSize,
                       4 * arguments.microBatchSize)
    }

    /// Megatron trains whole global batches of --train-samples (train_samples // global_batch_size iterations).
    func testSampleBasedTrainingRunsWholeGlobalBatches() throws {
        let withoutIters = base.prefix(12) + ["--lr", "1e-3", "--global-batch-size", "4"]
        func iterations(_ samples: Int) throws -> Int {
            let arguments = try MegatronArgumentParser.parse(withoutIters + ["--train-samples", "\(samples)"])
            return try TrainingSchedule(arguments, groups: []).trainIters
        }
        XCTAssertEqual(try iterations(8), 2)
        XCTAssertEqual(try iterations(11), 2)
        XCTAssertThrowsError(try iterations(3)) {
            XCTAssertEqual("\($0)", "--train-samples (3) is less than one global batch (4): no iteration would run")
        }
    }

    func testValuesThatWouldOverflowAreRefused() {
        assertRefused([
            ("--hidden-size 100000000000", "--hidden-size 100000000000 is too large: at most 2147483647"),
            ("--global-batch-size 9223372036854775806", "--global-batch-size 9223372036854775806 is too large: at most 2147483647"),
            ("--train-iters 4611686018427387904",
             "--train-iters 4611686018427387904 is too large: 4611686018427387904 iterations of 2 samples overflow a 64-bit sample count"),
            ("--eval-interval 5 --eval-iters 4611686018427387904",
             "--eval-iters 4611686018427387904 is too large: 3 evaluations of 4611686018427387904 batches of 2 samples overflow a 64-bit sample count"),
        ])
    }

    /// GPT-2 124M: its matrices and embeddings are 124.3M weights, 16 bytes each with fp32 Adam, plus one
    /// micro-batch's fp32 logits; that fits 80 GiB, not 2 GiB, and the refusal names the flags that shrink it.
    func testModelThatCannotFitTheDeviceIsRefusedBeforeItIsBuilt() throws {
        let arguments = try MegatronArgumentParser.parse([
            "--num-layers", "12", "--hidden-size", "768", "--num-attention-heads", "12", "--seq-length", "1024",
            "--max-position-embeddings", "1024", "--micro-batch-size", "8", "--train-iters", "1", "--lr", "1e-4"])
        let floor = TrainingMemoryFloor(arguments, config: try arguments.transformerConfig(), vocabSize: 50304)
        let layer: Double = 768 * 2304 + 768 * 768 + 2 * 768 * 3072
        let embeddings: Double = 50304 * 768 + 1024 * 768
        XCTAssertEqual(floor.parameters, 12 * layer + embeddings)
        let logits: Double = 8 * 1024 * 50304 * 4
        XCTAssertEqual(floor.bytes, floor.parameters * 16 + logits)
        XCTAssertNoThrow(try floor.check(capacity: 80 << 30, on: "cuda:0"))
        XCTAssertThrowsError(try floor.check(capacity: 2 << 30, on: "cuda:0")) {
            let message = "\($0)"
            XCTAssertTrue(message.hasPrefix("the model does not fit: training it needs at least 3.39 GiB per rank on cuda:0 "
                                            + "(1.24e+08 weights"), message)
            for flag in ["--num-layers", "--hidden-size", "--micro-batch-size", "--tensor-model-parallel-size"] {
                XCTAssertTrue(message.contains(flag), flag)
            }
        }
        let split = TrainingMemoryFloor(arguments, config: try arguments.transformerConfig(), vocabSize: 50304,
                                        tensorParallelSize: 2)
        let positions: Double = 1024 * 768
        XCTAssertEqual(split.parameters, (floor.parameters - positions) / 2 + positions, "all but the positions split over TP")
    }
}
