import XCTest
@testable import MegatronTraining

final class ArgumentTests: XCTestCase {
    /// The flags Megatron requires, for a small model.
    static let required = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 2 --lr 1e-3 --train-iters 5"

    func words(_ line: String) -> [String] { line.split(separator: " ").map(String.init) }

    func parse(_ line: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(words(line))
    }

    /// The error `line` (after the required flags) gets from parsing and validation, or "no error".
    func message(_ line: String, required: Bool = true) -> String {
        errorText { try parse(required ? Self.required + " " + line : line).validate() }
    }

    func testMegatronFlagsSetFields() throws {
        let a = try parse("--num-layers 24 --hidden-size=2048 --num-attention-heads 16 --seq-length 128 --max-position-embeddings 128 "
            + "--micro-batch-size 1 --swiglu --disable-bias-linear --lr 3e-4 --train-iters 10 --normalization RMSNorm --bf16")
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

    /// As Megatron's validate_args: a command line without the model shape, batch, length or lr is refused,
    /// every missing flag named at once, rather than training a default model.
    func testMissingRequiredFlagsAreListedTogether() {
        XCTAssertEqual(message("--num-layers 2 --lr 1e-3", required: false),
                       "missing flags Megatron-LM requires: --hidden-size, --num-attention-heads, --seq-length, "
                       + "--max-position-embeddings, --micro-batch-size, --train-iters (or --train-samples) "
                       + "(with no flags at all, pretrain-gpt trains its built-in demo model)")
        let withoutLength = Self.required.replacingOccurrences(of: " --train-iters 5", with: "")
        XCTAssertTrue(message(withoutLength + " --train-samples 10", required: false) == "no error")
        XCTAssertTrue(message(withoutLength, required: false).hasPrefix("missing a flag Megatron-LM requires: --train-iters (or --train-samples)"))
    }

    /// Every flag of a feature this build lacks is reported in one error, grouped by its feature, with the other
    /// problems of the line; the values of refused flags are skipped, not taken for flags.
    func testUnsupportedFlagsAreReportedTogetherByFeature() {
        XCTAssertEqual(message("--fp8-param-gather --moe-input-jitter-eps 2 --ckpt-format torch_dist --ckpt-assume-constant-structure "
                               + "--hierarchical-context-parallel-sizes 2 4 --use-ring-exchange-p2p --wandb-project run --multi-latent-attention "
                               + "--save ckpt --save-interval 1"),
                       """
                       pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):
                         FP8: --fp8-param-gather
                         mixture of experts: --moe-input-jitter-eps 2
                         checkpoint formats (--ckpt-format): --ckpt-assume-constant-structure
                         context parallelism: --hierarchical-context-parallel-sizes 2 4
                         pipeline parallelism: --use-ring-exchange-p2p
                         Weights & Biases logging (use --tensorboard-dir): --wandb-project run
                         multi-latent attention: --multi-latent-attention
                       """)
        XCTAssertEqual(message("--num-layer 2 --context-parallel-size 2 --optimizer muon --lr x"), """
            pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):
              context parallelism: --context-parallel-size 2
              --optimizer other than adam, sgd: --optimizer muon
            unknown flag --num-layer; did you mean --num-layers, --num-classes, --fim-rate?
            --lr needs a number, got 'x'
            """)
        XCTAssertEqual(message("--pipeline-model-parallel-size 1 --context-parallel-size 1 --expert-model-parallel-size 1"), "no error")
    }

    /// Megatron's aliases and legacy spellings set what their modern spellings set; the spellings Megatron itself
    /// no longer takes are refused with their replacement.
    func testAliasesAndLegacySpellings() throws {
        XCTAssertEqual(try parse(Self.required + " --use-rotary-position-embeddings").positionEmbeddingType, .rope)
        XCTAssertEqual(try parse(Self.required + " --recompute-activations").resolvedRecomputeGranularity, .selective)
        XCTAssertEqual(try parse(Self.required + " --persistent-save-interval 7").saveInterval, 7)
        XCTAssertTrue(try parse(Self.required + " --use-checkpoint-opt-param-scheduler").useCheckpointOptParamScheduler)
        XCTAssertTrue(try parse(Self.required + " --override-opt_param-scheduler").overrideOptParamScheduler)
        XCTAssertNoThrow(try parse(Self.required + " --disable-manual-gc-eval --no-manual-gc-eval"))
        XCTAssertEqual(message("--checkpoint-activations"),
                       "--checkpoint-activations is no longer accepted by Megatron-LM: use --recompute-activations, or --recompute-granularity and --recompute-method")
        XCTAssertEqual(message("--batch-size 4"), "--batch-size is no longer accepted by Megatron-LM: use --micro-batch-size")
        XCTAssertTrue(message("--num_layers 2").hasPrefix("unknown flag --num_layers; did you mean --num-layers"), "Megatron takes no underscores")
    }

    /// Flags that only choose Megatron's implementation are accepted; where the meaning differs here, one start-up
    /// line says so (flags sharing a reason on one line).
    func testImplementationChoicesAreAcceptedWithOneNoteEach() throws {
        let parsed = try MegatronArgumentParser.parseCommandLine(words(Self.required + " --use-mcore-models --transformer-impl local "
            + "--attention-backend unfused --distributed-backend nccl --no-gradient-accumulation-fusion --no-rope-fusion "
            + "--no-masked-softmax-fusion --no-bias-swiglu-fusion --no-bias-dropout-fusion --no-persist-layer-norm "
            + "--attention-softmax-in-fp32 --no-mmap-bin-files --num-workers 2 --no-create-attention-mask-in-dataloader "
            + "--manual-gc --manual-gc-interval 100 --distributed-timeout-minutes 30 --timing-log-level 2"))
        XCTAssertEqual(parsed.notes, [
            "> --transformer-impl local: the layers run on this build's own kernels; the model is the same",
            "> --attention-backend unfused: attention runs fused all the same (same math, without keeping [s, s] scores)",
            "> --no-gradient-accumulation-fusion, --no-rope-fusion, --no-masked-softmax-fusion, --no-bias-swiglu-fusion, "
                + "--no-bias-dropout-fusion, --no-persist-layer-norm: " + PretrainFlags.fusionNote,
            "> --no-mmap-bin-files: .bin files are read through mmap all the same (same data)",
            "> --num-workers 2: batches are made in the training process, without worker processes",
            "> --manual-gc, --manual-gc-interval 100: " + PretrainFlags.gcNote,
        ])
        XCTAssertEqual(parsed.arguments.distributedTimeoutMinutes, 30)
        XCTAssertEqual(parsed.arguments.timingLogLevel, 2)
        XCTAssertEqual(parsed.arguments.transformerImpl, .local)
        XCTAssertEqual(message("--timing-log-level 3"), "--timing-log-level must be one of 0, 1, 2, got 3")
        XCTAssertEqual(message("--distributed-backend gloo"), """
            pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):
              --distributed-backend other than nccl: --distributed-backend gloo
            """)
        XCTAssertEqual(message("--transformer-impl te"), "--transformer-impl must be one of transformer_engine, local, got 'te'")
    }

    /// `--deterministic-mode` and `--attention-backend flash|fused` reach the kernels through the environment the
    /// GPU's context is made with (MEGATRON_DETERMINISTIC picks the ordered embedding backward, scatter-add and
    /// attention dQ); a variable the environment sets wins.
    func testKernelChoicesReachTheGPUContext() throws {
        let plain = try parse(Self.required)
        XCTAssertEqual(plain.cudaEnvironment(["PATH": "/bin"]), ["PATH": "/bin"])
        let chosen = try parse(Self.required + " --deterministic-mode --attention-backend flash")
        XCTAssertTrue(chosen.deterministicMode)
        XCTAssertEqual(chosen.cudaEnvironment([:]), ["MEGATRON_DETERMINISTIC": "1", "MEGATRON_ATTENTION": "kernels"])
        XCTAssertEqual(try parse(Self.required + " --attention-backend fused").cudaEnvironment([:]), ["MEGATRON_ATTENTION": "cudnn"])
        XCTAssertEqual(chosen.cudaEnvironment(["MEGATRON_ATTENTION": "cudnn"])["MEGATRON_ATTENTION"], "cudnn")
    }

    /// A tensor-parallel size needs ranks: alone, the process is told how to launch them.
    func testTensorParallelismOutsideALauncherIsRefused() throws {
        let args = try parse(Self.required + " --tensor-model-parallel-size 2")
        XCTAssertThrowsError(try TrainingWorld.current(args, environment: [:])) {
            XCTAssertEqual("\($0)", "--tensor-model-parallel-size 2 needs 2 ranks, but this process runs alone: start it with "
                + "megatron launch --nproc-per-node 2 -- pretrain-gpt ... (on a CPU the ranks are threads), or torchrun")
        }
        XCTAssertNil(try TrainingWorld.current(try parse(Self.required), environment: [:]))
    }

    /// Parallel layouts that cannot work stop before any work, naming the flags at fault.
    func testImpossibleParallelSettingsAreRefused() {
        let base = "--lr 1e-3 --train-iters 1 --num-layers 2 --hidden-size 64 --num-attention-heads 6 --seq-length 8 "
            + "--max-position-embeddings 8 --micro-batch-size 1"
        XCTAssertEqual(message(base + " --tensor-model-parallel-size 4", required: false),
                       "--num-attention-heads (6) must be divisible by --tensor-model-parallel-size (4)")
        XCTAssertEqual(message(base + " --overlap-param-gather", required: false), "--overlap-param-gather needs --use-distributed-optimizer")
        XCTAssertEqual(message(base + " --tensor-model-parallel-size 0", required: false), "--tensor-model-parallel-size must be at least 1, got 0")
    }

    func testInconsistentValuesStopBeforeWork() {
        XCTAssertEqual(message("--micro-batch-size 4 --global-batch-size 10"),
                       "--global-batch-size (10) must be a multiple of --micro-batch-size (4) x data-parallel size (1)")
        XCTAssertTrue(message("--hidden-size 100 --num-attention-heads 3").contains("divisible by --num-attention-heads"))
        XCTAssertEqual(message("--bf16 --fp16"), "--bf16 and --fp16 cannot both be set")
        XCTAssertEqual(message("--train-iters x"), "--train-iters needs an integer, got 'x'")
        XCTAssertEqual(message("--normalization BatchNorm"), "--normalization must be one of LayerNorm, RMSNorm, got 'BatchNorm'")
        XCTAssertEqual(message("--lr"), "--lr needs a value")
        XCTAssertEqual(message("--swiglu=yes"), "--swiglu takes no value")
        XCTAssertEqual(message("--seq-length 64 --max-position-embeddings 32"), "--seq-length (64) exceeds --max-position-embeddings (32)")
    }

    /// The generated table of Megatron's flags: spellings, dests, defaults and features as its argparse has them.
    func testMegatronFlagCatalog() throws {
        XCTAssertEqual(MegatronFlagCatalog.all.count, 838)
        let saveInterval = try XCTUnwrap(MegatronFlagCatalog.byName["--persistent-save-interval"])
        XCTAssertEqual(saveInterval.names, ["--save-interval", "--persistent-save-interval"])
        let bias = try XCTUnwrap(MegatronFlagCatalog.byDest["add_bias_linear"])
        XCTAssertEqual(bias.names, ["--disable-bias-linear"])
        XCTAssertEqual(bias.action, .storeFalse)
        XCTAssertTrue(bias.isDefault("True"))
        XCTAssertEqual(MegatronFlagCatalog.byName["--eval-iters"]?.defaultValue, "100")
        XCTAssertEqual(MegatronFlagCatalog.byName["--attention-backend"]?.choices, ["flash", "fused", "unfused", "local", "auto"])
        XCTAssertEqual(MegatronFlagCatalog.byName["--moe-router-topk"]?.feature, "mixture of experts")
        XCTAssertEqual(MegatronFlagCatalog.byName["--data-path"]?.action, .list)
        XCTAssertNil(MegatronFlagCatalog.byName["--help"], "help is the command's, not a flag to refuse")
    }
}
