import XCTest
@testable import MegatronTraining

/// `pretrain-gpt --moe-grouped-gemm` on the CPU trains a small Mixtral-style model (and one with many small
/// experts, top-3 and a shared expert) to exactly the losses of the run whose experts go one after another.
final class MoEGroupedGemmTrainingTests: XCTestCase {
    static let tiny = "--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 16 "
        + "--micro-batch-size 2 --global-batch-size 4 --lr 3e-3 --log-interval 1 --eval-iters 0 --train-iters 4 "
        + "--hidden-dropout 0 --attention-dropout 0 --swiglu --disable-bias-linear --normalization RMSNorm "
        + "--position-embedding-type rope --moe-aux-loss-coeff 0.01 "

    func losses(_ flags: String) throws -> [Double] {
        let arguments = try MegatronArgumentParser.parse((Self.tiny + flags).split(separator: " ").map(String.init))
        return try Pretrainer(arguments: arguments) { _ in }.run().intervalLosses
    }

    func testGroupedGemmTrainsIdentically() throws {
        for model in ["--num-experts 4 --moe-ffn-hidden-size 24 --moe-router-topk 2",
                      "--num-experts 8 --moe-ffn-hidden-size 8 --moe-router-topk 3 --moe-shared-expert-intermediate-size 16 --bf16"] {
            let sequential = try losses(model)
            XCTAssertEqual(sequential.count, 4)
            XCTAssertLessThan(sequential.last!, sequential.first!, "\(model): trains")
            XCTAssertEqual(try losses(model + " --moe-grouped-gemm"), sequential, model)
        }
    }
}
