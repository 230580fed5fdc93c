import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// The tensor-parallel pieces that run their own tensor ops (not only collectives) on the GPU, against
/// the CPU. Skipped without a CUDA device.
final class TensorParallelGPUTests: XCTestCase {
    override func setUpWithError() throws {
        try requireGPU("tensor-parallel GPU tests")
    }

    /// Which ids a rank owns and their local rows, computed on the device.
    func testVocabSliceOnTheGPU() throws {
        let ids = Tensor(shape: [2, 4], ints: [0, 15, 7, 8, 3, 12, 4, -100])
        let cpu = VocabSlice(start: 4, count: 4, ids: ids)
        let gpu = VocabSlice(start: 4, count: 4, ids: ids.to(.cuda(0)))
        XCTAssertEqual(gpu.owned.floats(), cpu.owned.floats())
        XCTAssertEqual(gpu.owned.floats(), [0, 0, 1, 0, 0, 0, 1, 0])
        XCTAssertEqual(gpu.localIndex.ints(), cpu.localIndex.ints())
    }

    /// The vocabulary-parallel loss (one rank) on the GPU equals the fused CPU cross-entropy, values and grads.
    func testVocabParallelCrossEntropyOnTheGPU() throws {
        let logitsCPU = Tensor.normal([3, 5, 40], std: 3, generator: PhiloxGenerator(seed: 21))
        let labels = Tensor(shape: [3, 5], ints: (0..<15).map { $0 == 2 ? -100 : ($0 * 11) % 40 })
        var reference = logitsCPU.detached()
        reference.requiresGrad = true
        let plain = Functional.crossEntropy(reference, labels: labels)
        plain.sum().backward()
        var logits = logitsCPU.to(.cuda(0))
        logits.requiresGrad = true
        let loss = VocabParallelCrossEntropy.loss(logits, labels: labels.to(.cuda(0)), group: .single)
        loss.sum().backward()
        XCTAssertLessThan(maxAbsDifference(loss.to(.cpu), plain), 1e-5)
        XCTAssertLessThan(maxAbsDifference(logits.grad!.to(.cpu), reference.grad!), 1e-6)
    }
}
