import XCTest
import MegatronTensor
@testable import MegatronTraining
import MegatronTestSupport

/// The same run on the GPU and on the CPU: same weights (initialized on the CPU), same data, same dropout
/// masks (Philox), so the losses agree up to fp32 rounding of different kernels.
final class GPUTrainingTests: XCTestCase {
    func testGPUTrainingFollowsCPUTraining() throws {
        try requireGPU("GPU training test")
        try compareWithCPU("", tolerance: 1e-3)
    }

    /// `--optimizer sgd` on a GPU: the norm kernel, then SGD with momentum in tensor ops (no SGD kernel).
    func testGPUTrainingWithSGDFollowsCPUTraining() throws {
        try requireGPU("GPU SGD training test")
        try compareWithCPU(" --optimizer sgd --sgd-momentum 0.9", tolerance: 1e-3)
    }

    /// `--fp16` on a GPU: the AdamW kernel updates the fp32 masters and a cast writes the fp16 weights; the
    /// fp16 kernels round differently from the CPU's, hence the looser tolerance.
    func testGPUTrainingInFP16FollowsCPUTraining() throws {
        try requireGPU("GPU fp16 training test")
        try compareWithCPU(" --fp16 --initial-loss-scale 4096", tolerance: 1e-2)
    }

    private func compareWithCPU(_ flags: String, tolerance: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        func losses(_ device: String) throws -> [Double] {
            let args = try MegatronArgumentParser.parse(
                ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 4 "
                 + "--train-iters 8 --lr 3e-3 --log-interval 1 --eval-iters 1 --device " + device + flags).split(separator: " ").map(String.init))
            return try Pretrainer(arguments: args) { _ in }.run().intervalLosses
        }
        let gpu = try losses("cuda"), cpu = try losses("cpu")
        XCTAssertEqual(gpu.count, 8, file: file, line: line)
        for (g, c) in zip(gpu, cpu) {
            XCTAssertEqual(g, c, accuracy: tolerance * c, "\(flags): gpu \(gpu) cpu \(cpu)", file: file, line: line)
        }
    }
}
