import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// Our GPTModel against Hugging Face transformers on tiny random models (fixtures from
/// scripts/fixtures/make_hf_golden.py): logits, loss and every parameter gradient.
final class HuggingFaceGoldenTests: XCTestCase {
    func fixture(_ arch: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/\(arch)")
    }

    func testGPT2MatchesTransformers() throws { try compare("gpt2") }

    func testLlamaWithGQAAndRoPEMatchesTransformers() throws { try compare("llama") }

    /// The same on the GPU (fp32): parameters placed with `onDevice`, every kernel on the device.
    func testGPT2AndLlamaMatchTransformersOnTheGPU() throws {
        do {
            _ = try CUDAContext.shared(ordinal: 0)
        } catch {
            throw XCTSkip("no usable CUDA device here, GPU golden test skipped: \(error)")
        }
        try compare("gpt2", device: .cuda(0))
        try compare("llama", device: .cuda(0))
    }

    func compare(_ arch: String, device: Device = .cpu, file: StaticString = #filePath, line: UInt = #line) throws {
        let directory = fixture(arch)
        let loaded = try onDevice(device) { try HuggingFaceGPT.load(directory: directory) }
        let golden = try SafeTensors.read(directory.appendingPathComponent("golden.safetensors")).tensors
        let ids = golden["input_ids"]!.to(device), labels = golden["labels"]!.to(device)
        let logits = loaded.model(ids).narrow(-1, start: 0, length: loaded.vocabSize)
        assertClose(logits.floats(), golden["logits"]!.floats(), tolerance: 1e-4, "\(arch) logits", file: file, line: line)
        let loss = Functional.crossEntropy(logits, labels: labels).mean()
        XCTAssertEqual(loss.item(), golden["loss"]!.item(), accuracy: 1e-5 * golden["loss"]!.item(), file: file, line: line)
        loss.backward()

        var hfGrads: [String: Tensor] = [:]
        for (name, g) in golden where name.hasPrefix("grad.") { hfGrads[String(name.dropFirst(5))] = g }
        let (_, config, _, _, tied) = try HuggingFaceGPT.modelShape(try HuggingFaceGPT.readConfig(directory))
        let expected = try HuggingFaceGPT.megatronState(from: hfGrads, architecture: loaded.architecture, config: config, tied: tied)
        let params = loaded.model.stateDict()
        XCTAssertEqual(Set(expected.keys), Set(params.keys), file: file, line: line)
        for (name, want) in expected {
            var got = params[name]!.grad!
            if got.shape[0] != want.shape[0] { got = got.narrowed(0, start: 0, length: want.shape[0]) }
            assertClose(got.floats(), want.floats(), tolerance: 1e-4, "\(arch) grad \(name)", file: file, line: line)
        }
    }

    /// Max absolute difference within `tolerance` of the reference's largest magnitude.
    func assertClose(_ a: [Float], _ b: [Float], tolerance: Float, _ what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(b.map(abs).max() ?? 0, 1e-12)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(what): max |diff| \(worst) vs scale \(scale)", file: file, line: line)
    }
}

final class HuggingFaceExportTests: XCTestCase {
    func testExportReproducesTheOriginalFilesExactly() throws {
        for arch in ["gpt2", "llama"] {
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/\(arch)")
            let target = FileManager.default.temporaryDirectory.appendingPathComponent("hf-\(arch)-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: target) }
            let loaded = try HuggingFaceGPT.load(directory: source)
            try HuggingFaceGPT.save(loaded.model, vocabSize: loaded.vocabSize, to: target)
            let original = try SafeTensors.read(source.appendingPathComponent("model.safetensors")).tensors
            let exported = try SafeTensors.read(target.appendingPathComponent("model.safetensors")).tensors
            XCTAssertEqual(Set(exported.keys), Set(original.keys), arch)
            for (name, t) in original {
                XCTAssertEqual(exported[name]?.shape, t.shape, "\(arch) \(name)")
                XCTAssertEqual(exported[name]?.floats(), t.floats(), "\(arch) \(name)")
            }
            let reloaded = try HuggingFaceGPT.load(directory: target)
            XCTAssertEqual(reloaded.model.config, loaded.model.config, arch)
        }
    }
}

final class GPTCheckpointTests: XCTestCase {
    func testMegatronCheckpointRoundTripKeepsModelAndOutputs() throws {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/llama")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("gptckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let loaded = try HuggingFaceGPT.load(directory: source)
        try GPTCheckpoint.save(loaded.model, vocabSize: loaded.vocabSize, to: CheckpointDirectory(root: root), release: true)
        let (model, vocab) = try GPTCheckpoint.load(from: CheckpointDirectory(root: root))
        XCTAssertEqual(vocab, 100)
        XCTAssertEqual(model.config, loaded.model.config)
        let tokens = Tensor(shape: [1, 5], ints: [1, 2, 3, 4, 5])
        XCTAssertEqual(withoutGrad { model(tokens).floats() }, withoutGrad { loaded.model(tokens).floats() })
    }
}
