import Foundation
import XCTest
@testable import MegatronTraining

/// `--config` / `--yaml-cfg` files in the three shapes Megatron users have: a flat mapping of flags, Megatron's
/// nested `--yaml-cfg` (examples/gpt3/gpt_config.yaml's shape) and the functional tests' `model_config.yaml`.
final class ConfigFileTests: XCTestCase {
    func write(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func parse(_ argv: [String], environment: [String: String] = [:]) throws -> ParsedCommandLine {
        try MegatronArgumentParser.parseCommandLine(argv, environment: environment)
    }

    func testFlatYAMLSetsFlagsAndTheCommandLineOverridesIt() throws {
        let path = try write("""
            num_layers: 6
            hidden-size: 256
            --num-attention-heads: 8
            seq_length: 64
            max-position-embeddings: 64
            micro_batch_size: 2
            lr: 6.0e-4
            swiglu: true
            bf16: false
            add_bias_linear: false      # Megatron's dest for --disable-bias-linear
            data-path: [0.3, web_text_document, 0.7, code_text_document]
            """)
        let args = try parse(["--config", path, "--hidden-size", "512", "--train-iters", "10"]).arguments
        XCTAssertEqual(args.numLayers, 6)
        XCTAssertEqual(args.hiddenSize, 512, "the command line wins")
        XCTAssertEqual(args.numAttentionHeads, 8)
        XCTAssertEqual(args.lr, 6e-4)
        XCTAssertTrue(args.swiglu)
        XCTAssertFalse(args.bf16)
        XCTAssertFalse(args.addBiasLinear)
        XCTAssertEqual(args.dataPath, ["0.3", "web_text_document", "0.7", "code_text_document"])
        XCTAssertEqual(try parse(["--yaml-cfg=\(path)", "--train-iters", "1"]).arguments.numLayers, 6)
    }

    /// Megatron's `--yaml-cfg` shape: dests at the top, TransformerConfig fields under language_model (renamed
    /// ones and activation_func translated as Megatron's loader does), ModelParallelConfig fields under
    /// model_parallel. Fields of missing features at their defaults (or null / false) ask for nothing.
    func testMegatronNestedYAML() throws {
        let path = try write("""
            # WARNING: Yaml configs is currently an experimental feature
            language_model:
              num_layers: 4
              hidden_size: 128
              num_attention_heads: 4
              num_query_groups: null
              ffn_hidden_size: null
              hidden_dropout: 0.0
              attention_dropout: 0.0
              layernorm_epsilon: 1.e-6
              add_bias_linear: False
              bias_activation_fusion: False
              gated_linear_unit: False
              activation_func: swiglu
              num_moe_experts: null
              init_method: null
              init_method_std: 0.01
              persist_layer_norm: False
              memory_efficient_layer_norm: False
              fp8: null
              fp8_margin: 0
              fp8_amax_compute_algo: "most_recent"
              fp8_wgrad: True
              normalization: "RMSNorm"
              moe_router_topk: 2
              moe_aux_loss_coeff: 0
              clone_scatter_output_in_embedding: True
            model_parallel:
              tensor_model_parallel_size: 1
              pipeline_model_parallel_size: 1
              virtual_pipeline_model_parallel_size: null
              sequence_parallel: True
              perform_initialization: True
              bf16: True
              params_dtype: null
              gradient_accumulation_fusion: True
              tp_comm_split_ag: True
              tp_comm_atomic_ag: True
              overlap_p2p_comm: False
              batch_p2p_comm: True
              barrier_with_L1_time: True
            use_legacy_models: False
            micro_batch_size: 2
            global_batch_size: 8
            position_embedding_type: rope
            rotary_percent: 1.0
            max_position_embeddings: 64
            untie_embeddings_and_output_weights: True
            transformer_impl: local
            lr: 2.5e-4
            lr_decay_style: cosine
            min_lr: 2.5e-5
            weight_decay: 0.1
            adam_beta2: 0.95
            save: null
            save_interval: 20000
            distributed_timeout_minutes: 10
            eval_iters: 32
            seq_length: 64
            train_iters: 100
            data_cache_path: ${CACHE_DIR}/index
            profile: False
            profile_ranks: [0]
            log_params_norm: False
            wandb_project: ''
            tensorboard_log_interval: 1
            """)
        let parsed = try parse(["--yaml-cfg", path], environment: ["CACHE_DIR": "/tmp/megatron"])
        let args = parsed.arguments
        XCTAssertEqual([args.numLayers, args.hiddenSize, args.numAttentionHeads, args.seqLength, args.microBatchSize], [4, 128, 4, 64, 2])
        XCTAssertEqual(args.normEpsilon, 1e-6, "layernorm_epsilon is --norm-epsilon")
        XCTAssertTrue(args.swiglu, "activation_func: swiglu")
        XCTAssertFalse(args.addBiasLinear)
        XCTAssertTrue(args.bf16)
        XCTAssertTrue(args.sequenceParallel)
        XCTAssertEqual(args.positionEmbeddingType, .rope)
        XCTAssertEqual(args.hiddenDropout, 0)
        XCTAssertEqual(args.initMethodStd, 0.01)
        XCTAssertEqual(args.lr, 2.5e-4)
        XCTAssertEqual(args.adamBeta2, 0.95)
        XCTAssertEqual(args.evalIters, 32)
        XCTAssertEqual(args.transformerImpl, .local)
        XCTAssertEqual(args.dataCachePath, "/tmp/megatron/index", "${CACHE_DIR} from the environment")
        XCTAssertNil(args.save)
        XCTAssertEqual(parsed.notes, [
            "> --no-persist-layer-norm: " + PretrainFlags.fusionNote,
            "> --transformer-impl local: the layers run on this build's own kernels; the model is the same",
        ])
        XCTAssertNoThrow(try args.validate())
    }

    /// In the nested shape, a field set away from its default asks for its feature: refused with the others.
    func testNestedYAMLRefusesFeaturesItTurnsOn() throws {
        let path = try write("""
            language_model: {num_layers: 2, hidden_size: 64, num_attention_heads: 4, fp8: hybrid, fp8_interval: 2}
            model_parallel: {context_parallel_size: 2}
            micro_batch_size: 1
            seq_length: 16
            max_position_embeddings: 16
            lr: 1.0e-3
            train_iters: 2
            decrease_batch_size_if_needed: true
            """)
        XCTAssertThrowsError(try parse(["--yaml-cfg", path])) {
            XCTAssertEqual("\($0)", """
                pretrain-gpt does not support these Megatron-LM features yet (remove their flags or run them in Megatron-LM):
                  batch-size ramp-up: --decrease-batch-size-if-needed
                  FP8: --fp8-interval 2
                  context parallelism: --context-parallel-size 2
                """)
        }
        let geglu = try write("language_model: {gated_linear_unit: true, activation_func: gelu}\n")
        XCTAssertThrowsError(try parse(["--yaml-cfg", geglu])) {
            XCTAssertEqual("\($0)", "--yaml-cfg \(geglu): language_model.gated_linear_unit: a gated linear unit needs activation_func: swiglu here")
        }
    }

    /// A functional test's model_config.yaml: MODEL_ARGS are flags as its harness passes them, ENV_VARS are
    /// returned to be set (and listed in a note), ${VAR} comes from the environment or the file's ENV_VARS.
    func testFunctionalTestModelConfig() throws {
        let path = try write("""
            ENV_VARS:
              CUDA_DEVICE_MAX_CONNECTIONS: 1
              NCCL_ALGO: Ring
              CUBLAS_WORKSPACE_CONFIG: :4096:8
            TEST_TYPE: regular
            MODEL_ARGS:
              --num-layers: 2
              --hidden-size: 64
              --num-attention-heads: 4
              --log-interval: 1
              --tensorboard-dir: ${TENSORBOARD_PATH}
              --micro-batch-size: 2
              --global-batch-size: 4
              --seq-length: 32
              --max-position-embeddings: 32
              --train-iters: 50
              --data-path: ${DATA_PATH}/my-gpt3_00_text_document
              --split: 949,50,1
              --distributed-backend: nccl
              --lr: 0.00015
              --lr-decay-style: cosine
              --min-lr: 1.0e-5
              --weight-decay: 1e-2
              --lr-warmup-fraction: .01
              --transformer-impl: transformer_engine
              --deterministic-mode: true
              --no-gradient-accumulation-fusion: true
              --use-mcore-models: true
              --bf16: true
              --attention-backend: unfused
              --sequence-parallel: false
            METRICS:
              - "lm loss"
            """)
        let parsed = try parse(["--yaml-cfg", path], environment: ["TENSORBOARD_PATH": "/tmp/tb", "DATA_PATH": "/data"])
        let args = parsed.arguments
        XCTAssertEqual(args.tensorboardDir, "/tmp/tb")
        XCTAssertEqual(args.dataPath, ["/data/my-gpt3_00_text_document"])
        XCTAssertEqual(args.split, "949,50,1")
        XCTAssertEqual(args.weightDecay, 0.01)
        XCTAssertEqual(args.lrWarmupFraction, 0.01)
        XCTAssertTrue(args.deterministicMode)
        XCTAssertTrue(args.bf16)
        XCTAssertFalse(args.sequenceParallel, "false leaves a switch off")
        XCTAssertEqual(parsed.environment, [EnvironmentVariable(name: "CUBLAS_WORKSPACE_CONFIG", value: ":4096:8"),
                                            EnvironmentVariable(name: "CUDA_DEVICE_MAX_CONNECTIONS", value: "1"),
                                            EnvironmentVariable(name: "NCCL_ALGO", value: "Ring")])
        XCTAssertEqual(parsed.notes.first, "> ENV_VARS of \(path): CUBLAS_WORKSPACE_CONFIG=:4096:8 CUDA_DEVICE_MAX_CONNECTIONS=1 NCCL_ALGO=Ring")
        XCTAssertThrowsError(try parse(["--yaml-cfg", path], environment: [:])) {
            XCTAssertEqual("\($0)", "--yaml-cfg \(path): environment variables ${DATA_PATH}, ${TENSORBOARD_PATH} not set")
        }
    }

    /// Functional-test YAML writes `$NAME` as well as `${NAME}` (its harness runs envsubst); a `$` before no name stays.
    func testBareDollarVariablesExpandAsEnvsubstDoes() {
        var expander = VariableExpander(environment: ["DATA_BLEND": "/d/blend", "A_1": "x"])
        XCTAssertEqual(expander.expand("$DATA_BLEND"), "/d/blend")
        XCTAssertEqual(expander.expand("${A_1}/$A_1-y $ 5$ $1 ${"), "x/x-y $ 5$ $1 ${")
        XCTAssertTrue(expander.missing.isEmpty)
        XCTAssertEqual(expander.expand("$MISSING/z"), "$MISSING/z")
        XCTAssertEqual(expander.missing, ["MISSING"])
    }

    func testBadFilesAndKeysAreNamed() throws {
        XCTAssertThrowsError(try parse(["--config", "/nonexistent.yaml"])) {
            XCTAssertEqual("\($0)", "--config: cannot read /nonexistent.yaml")
        }
        let list = try write("- 1\n- 2\n")
        XCTAssertThrowsError(try parse(["--config", list])) {
            XCTAssertTrue("\($0)".hasSuffix("expected a mapping of flag names to values"), "\($0)")
        }
        let typo = try write("num-layer: 2\n")
        XCTAssertThrowsError(try parse(["--config", typo])) {
            XCTAssertTrue("\($0)".hasPrefix("unknown flag --num-layer; did you mean --num-layers"), "\($0)")
        }
        let section = try write("training: {lr: 1.0e-3}\n")
        XCTAssertThrowsError(try parse(["--config", section])) {
            XCTAssertEqual("\($0)", "--config \(section): training: a mapping is no flag value")
        }
        let notSwitch = try write("swiglu: maybe\n")
        XCTAssertThrowsError(try parse(["--config", notSwitch])) {
            XCTAssertEqual("\($0)", "--config \(notSwitch): swiglu: --swiglu is a switch; give true or false, not 'maybe'")
        }
    }
}
