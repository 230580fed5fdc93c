import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

final class GenerationTests: XCTestCase {
    /// Step-by-step decoding with the key/value cache gives the logits of a full forward pass, position by
    /// position, for GPT-2 (learned positions) and LLaMA (RoPE, GQA).
    func testCachedDecodingMatchesFullForward() throws {
        for arch in ["gpt2", "llama"] {
            let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/\(arch)")
            let model = try HuggingFaceGPT.load(directory: dir).model
            let ids = [5, 17, 42, 8, 99, 3, 61, 20]
            let full = withoutGrad { model(Tensor(shape: [1, ids.count], ints: ids)) }
            let cache = KVCache(layers: model.config.numLayers)
            let prefill = withoutGrad { model(Tensor(shape: [1, 3], ints: Array(ids.prefix(3))), cache: cache) }
            // Different row counts take different GEMM paths, so compare within fp32 rounding, not bitwise.
            for (a, b) in zip(prefill.floats(), full.narrowed(1, start: 0, length: 3).floats()) {
                XCTAssertEqual(a, b, accuracy: 1e-5, "\(arch) prefill")
            }
            for position in 3..<ids.count {
                let step = withoutGrad { model(Tensor(shape: [1, 1], ints: [ids[position]]), cache: cache) }
                let expected = full.narrowed(1, start: position, length: 1).floats()
                for (a, b) in zip(step.floats(), expected) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(arch) position \(position)") }
            }
            XCTAssertEqual(cache.length, ids.count)
        }
    }

    func testGreedyGenerationIsDeterministicAndReportsLogProbabilities() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf/llama")
        let model = try HuggingFaceGPT.load(directory: dir).model
        let greedy = SamplingOptions(temperature: 0, topK: 0)
        let a = model.generate(prompt: [1, 2, 3], maxNewTokens: 6, options: greedy)
        XCTAssertEqual(a, model.generate(prompt: [1, 2, 3], maxNewTokens: 6, options: greedy))
        XCTAssertEqual(a.tokens.count, 6)
        // The first greedy token is the argmax of the full forward's last logits, with its log-softmax.
        let logits = withoutGrad { model(Tensor(shape: [1, 3], ints: [1, 2, 3])) }.selected(1, 2).floats()
        let best = logits.indices.max { logits[$0] < logits[$1] }!
        XCTAssertEqual(a.tokens[0], best)
        let logSumExp = logits.max()! + Foundation.log(logits.map { Foundation.exp($0 - logits.max()!) }.reduce(0, +))
        XCTAssertEqual(a.logProbabilities[0], logits[best] - logSumExp, accuracy: 1e-5)
        let sampled = model.generate(prompt: [1, 2, 3], maxNewTokens: 6, options: SamplingOptions(temperature: 1, topK: 0, topP: 0.9, seed: 7))
        XCTAssertEqual(sampled, model.generate(prompt: [1, 2, 3], maxNewTokens: 6, options: SamplingOptions(temperature: 1, topK: 0, topP: 0.9, seed: 7)))
        XCTAssertTrue(sampled.logProbabilities.allSatisfy { $0 <= 0 })
    }
}
