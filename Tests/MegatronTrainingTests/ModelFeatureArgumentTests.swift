import XCTest
import MegatronCore
@testable import MegatronTraining

/// Megatron's model and training feature flags: what they set and what they refuse, as Megatron.
final class ModelFeatureArgumentTests: XCTestCase {
    /// The model shape and batch Megatron requires; `base` trains by iterations, `samples` by samples.
    let shape = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 2 "
    var base: String { "--lr 1e-3 --train-iters 1 " + shape }

    func parse(_ line: String) throws -> PretrainArguments {
        let args = try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
        try args.validate()
        return args
    }

    func message(_ line: String) -> String { errorText { _ = try parse(line) } }

    /// `--moe-shared-expert-gate` gates the shared expert (Qwen2-MoE's); as in Megatron it takes effect only with
    /// `--moe-shared-expert-intermediate-size`.
    func testSharedExpertGateNeedsASharedExpert() throws {
        let moe = base + "--disable-bias-linear --num-experts 4 --moe-shared-expert-gate "
        XCTAssertEqual(try parse(moe + "--moe-shared-expert-intermediate-size 32").transformerConfig().moe?.sharedExpertGate, true)
        XCTAssertNil(try parse(moe).transformerConfig().moe?.sharedExpertGate)
        XCTAssertNil(try parse(base + "--disable-bias-linear --num-experts 4 --moe-shared-expert-intermediate-size 32")
            .transformerConfig().moe?.sharedExpertGate)
    }

    /// `--moe-shared-expert-overlap` is accepted (the same model: only Megatron's scheduling differs), and with a
    /// shared expert it needs the alltoall dispatcher, as Megatron's TransformerConfig checks.
    func testSharedExpertOverlapNeedsTheAllToAllDispatcher() throws {
        let moe = base + "--disable-bias-linear --num-experts 4 --moe-shared-expert-overlap "
        let overlapped = try parse(moe + "--moe-shared-expert-intermediate-size 32 --moe-token-dispatcher-type alltoall")
        XCTAssertTrue(overlapped.moeSharedExpertOverlap)
        XCTAssertEqual(try overlapped.transformerConfig().moe?.sharedExpertIntermediateSize, 32)
        XCTAssertNoThrow(try parse(moe).transformerConfig())
        XCTAssertEqual(message(moe + "--moe-shared-expert-intermediate-size 32"),
                       "--moe-shared-expert-overlap works with the alltoall (or flex) token dispatcher only (as in Megatron), "
                       + "got --moe-token-dispatcher-type allgather")
    }

    /// `--moe-layer-freq`: an integer N makes every N-th layer MoE (from layer 0), a list gives 1 (MoE) or 0 per layer.
    func testMoELayerFrequency() throws {
        let moe = base + "--disable-bias-linear --num-experts 4 "
        XCTAssertEqual(try parse(moe).transformerConfig().moe?.layers, [true, true])
        XCTAssertEqual(try parse(moe + "--moe-layer-freq 2").transformerConfig().moe?.layers, [true, false])
        XCTAssertEqual(try parse(moe + "--moe-layer-freq [0]*1+[1]").transformerConfig().moe?.layers, [false, true])
        XCTAssertEqual(message(moe + "--moe-layer-freq 0"), "--moe-layer-freq must be positive, got 0")
        XCTAssertEqual(message(moe + "--moe-layer-freq [1,0,1]"), "--moe-layer-freq gives 3 layers, but --num-layers is 2")
        XCTAssertEqual(message(moe + "--moe-layer-freq [1,2]"), "--moe-layer-freq must list 1 (MoE) or 0 (dense) per layer, got [1, 2]")
    }

    /// The MLP's GeLU is Megatron's fused tanh approximation only while the bias-GeLU fusion applies; with
    /// `--no-bias-gelu-fusion`, or without biases (Megatron turns the fusion off), it is the exact erf GeLU.
    func testGeLUFormFollowsTheBiasGeLUFusion() throws {
        XCTAssertEqual(try parse(base).transformerConfig().activation, .gelu)
        XCTAssertEqual(try parse(base + "--no-bias-gelu-fusion").transformerConfig().activation, .geluExact)
        XCTAssertEqual(try parse(base + "--disable-bias-linear").transformerConfig().activation, .geluExact)
        XCTAssertEqual(try parse(base + "--swiglu --disable-bias-linear").transformerConfig().activation, .silu)
        XCTAssertEqual(try parse(base + "--squared-relu").transformerConfig().activation, .squaredRelu)
        XCTAssertEqual(message(base + "--squared-relu --swiglu"), "--squared-relu and --swiglu cannot both be set")
    }

    func testModelFlagsReachTheConfig() throws {
        let config = try parse(base + "--apply-layernorm-1p --normalization RMSNorm --embedding-init-method-std 1.0 "
                               + "--init-method-xavier-uniform --kv-channels 32 --init-method-std 0.01").transformerConfig()
        XCTAssertTrue(config.layernormZeroCenteredGamma)
        XCTAssertEqual(config.embeddingInitMethodStd, 1.0)
        XCTAssertTrue(config.initMethodXavierUniform)
        XCTAssertEqual(config.kvChannels, 32)
        XCTAssertEqual(config.initMethodStd, 0.01)
        XCTAssertEqual(config.embeddingInitMethod, .normal(std: 1.0))
        XCTAssertEqual(config.outputLayerInitMethod, .xavierUniform)
        XCTAssertEqual(try parse(base).transformerConfig().outputLayerInitMethod, .normal(std: 0.01))
    }

    /// Megatron accepts `--no-position-embedding` only where it changes nothing: with rotary embeddings.
    func testNoPositionEmbeddingNeedsRoPE() throws {
        XCTAssertTrue(message(base + "--no-position-embedding").hasPrefix("--no-position-embedding is deprecated"),
                      message(base + "--no-position-embedding"))
        let rope = try parse(base + "--position-embedding-type rope --no-position-embedding").transformerConfig()
        XCTAssertEqual(rope.positionEmbeddingType, .rope)
    }

    func testRotaryDimensionMustBePositive() {
        XCTAssertTrue(message(base + "--position-embedding-type rope --rotary-percent 0.01").contains("rotary dimension 0"))
    }

    /// `--recompute-activations` is selective (it wins over `--recompute-granularity`); selective recomputes
    /// `--recompute-modules` (default core_attn); Megatron's modules of features absent here are refused by name.
    func testSelectiveRecomputeFlags() throws {
        let alias = try parse(base + "--recompute-granularity full --recompute-activations")
        XCTAssertEqual(alias.resolvedRecomputeGranularity, .selective)
        XCTAssertEqual(try alias.selectiveRecomputeModules(), [.coreAttention])
        XCTAssertEqual(try parse(base + "--recompute-granularity selective --recompute-modules mlp core_attn")
            .selectiveRecomputeModules(), [.mlp, .coreAttention])
        XCTAssertTrue(message(base + "--recompute-granularity selective --recompute-modules layernorm")
            .hasPrefix("--recompute-modules layernorm: not supported here"))
        XCTAssertTrue(message(base + "--recompute-activations --recompute-modules moe_act")
            .contains("mixture of experts is not implemented"))
        XCTAssertEqual(message(base + "--recompute-granularity selective --recompute-modules attn"),
                       "--recompute-modules: unknown module 'attn'; supported: core_attn, mlp, gdn_norm_out")
        XCTAssertEqual(message(base + "--recompute-granularity selective --recompute-num-layers 1"),
                       "--recompute-num-layers must not be set with --recompute-granularity selective (or --recompute-activations)")
        // Megatron ignores a method without a granularity, and with selective.
        XCTAssertEqual(message(base + "--recompute-method uniform"), "no error")
        XCTAssertEqual(message(base + "--recompute-granularity selective --recompute-method block"), "no error")
        XCTAssertEqual(message(base + "--recompute-granularity full --recompute-method block"),
                       "--recompute-granularity full needs --recompute-method and --recompute-num-layers")
    }

    func testRampupNeedsSamplesAndDivisibleBatches() {
        let samples = "--lr 1e-3 --train-samples 100 " + shape
        XCTAssertEqual(message(samples + "--global-batch-size 8 --rampup-batch-size 2 2 40"), "no error")
        XCTAssertEqual(message(base + "--global-batch-size 8 --rampup-batch-size 2 2 40"),
                       "--rampup-batch-size needs sample-based training (--train-samples), not --train-iters, as in Megatron")
        XCTAssertTrue(message(samples + "--global-batch-size 8 --rampup-batch-size 2 2").hasPrefix("--rampup-batch-size needs three integers"))
        XCTAssertTrue(message(samples + "--global-batch-size 8 --rampup-batch-size 2 4 40").contains("must be a non-negative multiple of the increment (4)"))
        XCTAssertEqual(message(samples + "--global-batch-size 9 --micro-batch-size 1 --rampup-batch-size 3 3 40"), "no error")
        XCTAssertTrue(message(samples + "--global-batch-size 8 --rampup-batch-size 1 1 40")
            .contains("must be multiples of --micro-batch-size x data-parallel size (2)"))
    }

    /// Megatron's ramp (num_microbatches_calculator.RampupBatchsizeNumMicroBatchesCalculator and
    /// training.update_train_iters) for `--rampup-batch-size 16 8 300000 --global-batch-size 1024`; the
    /// expected numbers come from running those two functions' arithmetic in Python.
    func testRampupFollowsMegatronsCalculator() throws {
        let ramp = try BatchSizeRampup(["16", "8", "300000"], globalBatchSize: 1024, microBatchTimesDataParallel: 8)
        XCTAssertEqual([0, 2380, 2381, 150_000, 299_999, 300_000, 300_001].map { ramp.batchSize(consumedSamples: $0) },
                       [16, 16, 24, 520, 1016, 1024, 1024])
        XCTAssertEqual(ramp.iterations(trainSamples: 1_000_000), 2002)
        XCTAssertEqual(ramp.iterations(trainSamples: 200_000), 1200)
    }

    func testExitFlags() throws {
        XCTAssertEqual(try parse(base + "--exit-signal SIGUSR1 --exit-on-missing-checkpoint").exitSignal, .sigusr1)
        XCTAssertTrue(message(base + "--exit-signal 10").hasPrefix("--exit-signal must be one of SIGHUP, SIGINT, SIGQUIT"),
                      message(base + "--exit-signal 10"))
    }
}
