import XCTest

/// A tiny dense model with gpt-oss's attention and MLP (the flags of Megatron's examples/gptoss/02_train.sh but its
/// MoE, pipeline and FP8 ones) trains two iterations on the CPU (on the built-in corpus), and the gpt-oss flags'
/// bad values stop the program with the flag named.
final class GptOssCommandLineTests: XCTestCase {
    let model = ["pretrain-gpt", "--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4",
                 "--group-query-attention", "--num-query-groups", "2", "--ffn-hidden-size", "64", "--seq-length", "24",
                 "--max-position-embeddings", "24", "--micro-batch-size", "2", "--global-batch-size", "2", "--lr", "1e-3",
                 "--eval-iters", "0",
                 "--log-interval", "1", "--device", "cpu", "--disable-bias-linear", "--normalization", "RMSNorm",
                 "--untie-embeddings-and-output-weights", "--position-embedding-type", "rope"]
    let gptOss = ["--rope-type", "rope", "--quick-geglu", "--glu-linear-offset", "1.0", "--activation-func-clamp-value", "7.0",
                  "--softmax-type", "learnable", "--window-size", "7,0", "--window-attn-skip-freq", "2",
                  "--export-force-local-attention", "--enable-gpt-oss", "--no-rope-fusion", "--no-bias-dropout-fusion"]

    func testDenseGptOssModelTrainsTwoIterations() throws {
        let outcome = try MegatronProcess.built().run(model + gptOss + ["--train-iters", "2"])
        XCTAssertEqual(outcome.status, 0, outcome.output)
        XCTAssertTrue(outcome.output.contains(" iteration        2/       2 |"), outcome.output)
        XCTAssertFalse(outcome.output.contains("lm loss: nan"), outcome.output)
        XCTAssertTrue(outcome.output.contains("--enable-gpt-oss") && outcome.output.contains("ModelOpt"),
                      "the start-up note says what --enable-gpt-oss does here:\n\(outcome.output)")
    }

    func testYaRNPositionsTrain() throws {
        let outcome = try MegatronProcess.built().run(model + ["--train-iters", "1", "--position-embedding-type", "yarn",
                                                               "--rotary-scaling-factor", "4", "--yarn-original-max-position-embeddings", "16",
                                                               "--softmax-type", "off-by-one"])
        XCTAssertEqual(outcome.status, 0, outcome.output)
        XCTAssertTrue(outcome.output.contains(" iteration        1/       1 |"), outcome.output)
    }

    func testBadValuesAreRefusedByName() throws {
        let megatron = try MegatronProcess.built()
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--window-size", "7,3"], mentions: ["--window-size", "causal"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--window-size", "seven"], mentions: ["--window-size"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--window-size", "7,0", "--window-attn-skip-freq", "[1,0,1]"],
                                        mentions: ["--window-attn-skip-freq", "--num-layers"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--rope-type", "yarn"], mentions: ["--rope-type", "--position-embedding-type yarn"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--softmax-type", "sparse"], mentions: ["--softmax-type"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--swiglu", "--activation-func-clamp-value", "7"],
                                        mentions: ["--activation-func-clamp-value", "mixture of experts"])
        try megatron.assertCleanFailure(model + ["--train-iters", "2", "--quick-geglu", "--swiglu"], mentions: ["--quick-geglu", "--swiglu"])
    }
}
