import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

final class GenerationTests: XCTestCase {
    /// Step-by-step decoding with the key/value cache gives the logits of a full forward pass, position by
    /// position, for every architecture (learned positions, RoPE with and without scaling, GQA, biases, q/k norm).
    func testCachedDecodingMatchesFullForward() throws {
        for arch in HuggingFaceFixtures.architectures {
            let model = try loadFixtureModel(arch)
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
        let model = try loadFixtureModel("llama")
        let greedy = SamplingOptions(temperature: 0, topK: 0)
        let a = model.generate(prompt: [1, 2, 3], vocabSize: 100, maxNewTokens: 6, options: greedy)
        XCTAssertEqual(a, model.generate(prompt: [1, 2, 3], vocabSize: 100, maxNewTokens: 6, options: greedy))
        XCTAssertEqual(a.tokens.count, 6)
        // The first greedy token is the argmax of the full forward's last real logits, with their log-softmax.
        let logits = Array(withoutGrad { model(Tensor(shape: [1, 3], ints: [1, 2, 3])) }.selected(1, 2).floats().prefix(100))
        let best = logits.indices.max { logits[$0] < logits[$1] }!
        XCTAssertEqual(a.tokens[0], best)
        let logSumExp = logits.max()! + Foundation.log(logits.map { Foundation.exp($0 - logits.max()!) }.reduce(0, +))
        XCTAssertEqual(a.logProbabilities[0], logits[best] - logSumExp, accuracy: 1e-5)
        let sampling = SamplingOptions(temperature: 1, topK: 0, topP: 0.9, seed: 7)
        let sampled = model.generate(prompt: [1, 2, 3], vocabSize: 100, maxNewTokens: 6, options: sampling)
        XCTAssertEqual(sampled, model.generate(prompt: [1, 2, 3], vocabSize: 100, maxNewTokens: 6, options: sampling))
        XCTAssertTrue(sampled.logProbabilities.allSatisfy { $0 <= 0 })
    }

    /// GPT-2's real logits are all negative (as a trained GPT-2's are) while Megatron's padding rows give 0:
    /// neither greedy nor sampled decoding may ever pick a padding id, and log-probabilities are over the
    /// real vocabulary (the padded one would put mass on the padding).
    func testGenerationNeverDrawsPaddingIds() throws {
        let model = try loadFixtureModel("gpt2")
        XCTAssertEqual(model.vocabSize, 128)
        let last = withoutGrad { model(Tensor(shape: [1, 3], ints: [5, 17, 42])) }.selected(1, 2).floats()
        XCTAssertLessThan(last.prefix(100).max()!, 0, "the fixture's real logits are negative")
        XCTAssertEqual(last.suffix(28).max()!, 0, "the padding rows give logit 0")
        for options in [SamplingOptions(temperature: 0), SamplingOptions(temperature: 1.5, topK: 0, seed: 3),
                        SamplingOptions(temperature: 1, topK: 50, topP: 0.95, seed: 4)] {
            let out = model.generate(prompts: [[5, 17, 42], [9]], vocabSize: 100, maxNewTokens: 20, options: options)
            for row in out {
                XCTAssertTrue(row.tokens.allSatisfy { $0 < 100 }, "\(row.tokens)")
                XCTAssertTrue(row.logProbabilities.allSatisfy { $0 <= 0 && $0 > -20 }, "\(row.logProbabilities)")
            }
        }
    }

    // MARK: batched prompts

    func loadFixtureModel(_ arch: String) throws -> GPTModel {
        try HuggingFaceGPT.load(directory: HuggingFaceFixtures.directory(arch)).model
    }

    /// Each batched row equals that prompt decoded alone: the same tokens, and log-probabilities equal up to
    /// fp32 rounding (batch and padding change the GEMM row counts and reduction lengths, hence the order
    /// of additions, not the math).
    func assertBatchedMatchesAlone(_ model: GPTModel, prompts: [[Int]], maxNewTokens: Int, stopToken: Int? = nil,
                                   options: SamplingOptions, _ label: String, accuracy: Float = 1e-5,
                                   file: StaticString = #filePath, line: UInt = #line) {
        let batched = model.generate(prompts: prompts, vocabSize: 100, maxNewTokens: maxNewTokens, stopToken: stopToken, options: options)
        XCTAssertEqual(batched.count, prompts.count, file: file, line: line)
        for (i, prompt) in prompts.enumerated() {
            let alone = model.generate(prompt: prompt, vocabSize: 100, maxNewTokens: maxNewTokens, stopToken: stopToken, options: options)
            XCTAssertEqual(batched[i].tokens, alone.tokens, "\(label) prompt \(i)", file: file, line: line)
            XCTAssertEqual(batched[i].logProbabilities.count, alone.logProbabilities.count, file: file, line: line)
            for (a, b) in zip(batched[i].logProbabilities, alone.logProbabilities) {
                XCTAssertEqual(a, b, accuracy: accuracy, "\(label) prompt \(i) log-probability", file: file, line: line)
            }
        }
    }

    /// Prompts of lengths 3, 9, 1 and 6 in one batch, with learned positions (GPT-2) and RoPE with GQA (LLaMA).
    func testBatchedGreedyGenerationMatchesOneByOne() throws {
        let prompts = [[5, 17, 42], [8, 99, 3, 61, 20, 11, 7, 64, 30], [13], [71, 2, 55, 9, 38, 90]]
        for arch in ["gpt2", "llama"] {
            let model = try loadFixtureModel(arch)
            assertBatchedMatchesAlone(model, prompts: prompts, maxNewTokens: 8,
                                      options: SamplingOptions(temperature: 0, topK: 0), "\(arch) greedy")
        }
    }

    func testBatchedSamplingDrawsEachRowsOwnStream() throws {
        let model = try loadFixtureModel("llama")
        let prompts = [[1, 2, 3, 4, 5], [6, 7]]
        assertBatchedMatchesAlone(model, prompts: prompts, maxNewTokens: 6,
                                  options: SamplingOptions(temperature: 1, topK: 0, topP: 0.9, seed: 7), "sampled")
    }

    /// A row that produces the stop token ends there while the others go on; a row whose prompt nearly
    /// fills the maximum sequence length (GPT-2's learned positions: 32) stops at it.
    func testBatchedRowsStopOnTheirOwn() throws {
        let greedy = SamplingOptions(temperature: 0, topK: 0)
        for arch in ["gpt2", "llama"] {
            let model = try loadFixtureModel(arch)
            let short = [5, 17, 42]
            let aloneTokens = model.generate(prompt: short, vocabSize: 100, maxNewTokens: 8, options: greedy).tokens
            let stop = aloneTokens[2]
            let long = (0..<29).map { ($0 * 37 + 11) % 100 }
            let prompts = [short, long, [13, 14]]
            let batched = model.generate(prompts: prompts, vocabSize: 100, maxNewTokens: 8, stopToken: stop, options: greedy)
            XCTAssertEqual(batched[0].tokens.last, stop, arch)
            XCTAssertLessThanOrEqual(batched[0].tokens.count, 3, arch)
            // 29 prompt tokens and 3 fed-back ones fill the 32 positions; the 4th generated token is not fed back.
            XCTAssertEqual(batched[1].tokens.count, min(4, batched[1].tokens.firstIndex(of: stop).map { $0 + 1 } ?? 4), arch)
            assertBatchedMatchesAlone(model, prompts: prompts, maxNewTokens: 8, stopToken: stop, options: greedy, arch)
        }
    }

    /// The same on the GPU (padding masks, per-row positions and row retirement as device tensors).
    func testBatchedGenerationOnGPUMatchesOneByOne() throws {
        try requireGPU("GPU batched generation test")
        let prompts = [[5, 17, 42], [8, 99, 3, 61, 20, 11, 7, 64, 30], [13]]
        for arch in ["gpt2", "llama"] {
            let cpu = try loadFixtureModel(arch)
            let gpu = onDevice(.cuda(0)) {
                GPTModel(config: cpu.config, vocabSize: cpu.vocabSize, maxSequenceLength: cpu.maxSequenceLength,
                         untieEmbeddingsAndOutputWeights: cpu.outputLayer != nil)
            }
            try gpu.loadStateDict(cpu.stateDict())
            // cuBLASLt's fp32 GEMMs differ from one row count to another by more than the CPU's.
            assertBatchedMatchesAlone(gpu, prompts: prompts, maxNewTokens: 6, stopToken: 7,
                                      options: SamplingOptions(temperature: 0, topK: 0), "\(arch) GPU", accuracy: 1e-3)
        }
    }

    func testLeftPaddingPositionsAndKeyMask() {
        let padding = LeftPadding(rowLengths: [2, 3])
        XCTAssertEqual(padding.counts, [1, 0])
        XCTAssertEqual(padding.positions(from: 0, count: 3), [[0, 0, 1], [0, 1, 2]])
        XCTAssertEqual(padding.positions(from: 3, count: 1), [[2], [3]])
        XCTAssertEqual(padding.lastPosition(from: 3, count: 1), 3)
        // Row 0: its pad query (column 0) sees its pad key; its real queries do not.
        let mask = padding.keyMask(queries: 3, keys: 3)
        XCTAssertEqual(mask.shape, [2, 1, 1, 3, 3])
        XCTAssertEqual(mask.ints(), [0, 0, 0, 1, 0, 0, 1, 0, 0,
                                     0, 0, 0, 0, 0, 0, 0, 0, 0])
        // One decode step: a single query (column 3) over 4 keys.
        XCTAssertEqual(padding.keyMask(queries: 1, keys: 4).ints(), [1, 0, 0, 0, 0, 0, 0, 0])
    }
}
