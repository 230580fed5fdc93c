import XCTest
import MegatronTensor
@testable import MegatronTraining
import MegatronTestSupport

/// `pretrain-gpt --fp8-format hybrid` on the GPU (cuBLASLt FP8 GEMMs) against the CPU's reference of the same run.
/// Skips without a GPU.
final class GPUFP8TrainingTests: XCTestCase {
    func testFP8TrainingOnTheGPUFollowsTheCPU() throws {
        try requireGPU("GPU FP8 training test")
        // The LLaMA-style case runs linear_fc2 behind SwiGLU, whose input is twice the layer's width.
        for (recipe, model) in [("delayed", ""), ("tensorwise", ""), ("delayed", "--swiglu --normalization RMSNorm --disable-bias-linear ")] {
            func losses(_ device: String) throws -> [Double] {
                let args = try MegatronArgumentParser.parse(
                    ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 4 "
                     + "--train-iters 8 --lr 3e-3 --log-interval 1 --eval-iters 1 --hidden-dropout 0 --attention-dropout 0 --bf16 " + model
                     + "--fp8-format hybrid --fp8-recipe \(recipe) --device \(device)").split(separator: " ").map(String.init))
                return try Pretrainer(arguments: args) { _ in }.run().intervalLosses
            }
            let gpu = try losses("cuda"), cpu = try losses("cpu")
            XCTAssertEqual(gpu.count, 8)
            for (g, c) in zip(gpu, cpu) { XCTAssertEqual(g, c, accuracy: 2e-2 * c, "\(recipe) \(model): gpu \(gpu) cpu \(cpu)") }
        }
    }
}
