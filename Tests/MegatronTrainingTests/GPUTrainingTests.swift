import XCTest
import MegatronTensor
@testable import MegatronTraining
import MegatronTestSupport

/// The same run on the GPU and on the CPU: same weights (initialized on the CPU), same data, same dropout
/// masks (Philox), so the losses agree up to fp32 rounding of different kernels.
final class GPUTrainingTests: XCTestCase {
    func testGPUTrainingFollowsCPUTraining() throws {
        try requireGPU("GPU training test")
        func losses(_ device: String) throws -> [Double] {
            let args = try MegatronArgumentParser.parse(
                ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 4 "
                 + "--train-iters 8 --lr 3e-3 --log-interval 1 --eval-iters 1 --device " + device).split(separator: " ").map(String.init))
            return try Pretrainer(arguments: args) { _ in }.run().intervalLosses
        }
        let gpu = try losses("cuda"), cpu = try losses("cpu")
        XCTAssertEqual(gpu.count, 8)
        for (g, c) in zip(gpu, cpu) { XCTAssertEqual(g, c, accuracy: 1e-3 * c, "gpu \(gpu) cpu \(cpu)") }
    }
}
