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

    func compare(_ arch: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let directory = fixture(arch)
        let loaded = try HuggingFaceGPT.load(directory: directory)
        let golden = try SafeTensors.read(directory.appendingPathComponent("golden.safetensors")).tensors
        let ids = golden["input_ids"]!, labels = golden["labels"]!
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
