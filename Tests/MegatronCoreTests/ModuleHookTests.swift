import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// Forward hooks: every forward of a module runs its registered hooks, in order, until they are removed.
final class ModuleHookTests: XCTestCase {
    func testPreAndPostHooksRunAroundEachForwardUntilRemoved() {
        let linear = Linear(inFeatures: 4, outFeatures: 3, generator: PhiloxGenerator(seed: 1))
        var events: [String] = []
        let first = linear.registerForwardPreHook { _ in events.append("pre1") }
        linear.registerForwardPreHook { module in events.append(module === linear ? "pre2" : "other") }
        let post = linear.registerForwardHook { _ in events.append("post") }
        _ = linear(Tensor.zeros([2, 4]))
        XCTAssertEqual(events, ["pre1", "pre2", "post"])
        linear.removeHook(first)
        linear.removeHook(post)
        linear.removeHook(post)   // a second removal is ignored
        events = []
        _ = linear(Tensor.zeros([2, 4]))
        XCTAssertEqual(events, ["pre2"])
        XCTAssertEqual(linear.forwardHookCount, 1)
    }

    /// A GPT forward enters each of its forward stages once, in order (what `DistributedDataParallel`'s
    /// parameter-gather waits rely on), untied output layer included.
    func testGPTForwardEntersEachForwardStageOnceInOrder() throws {
        let config = try TransformerConfig(numLayers: 3, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32)
        for untied in [false, true] {
            let model = GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8, untieEmbeddingsAndOutputWeights: untied)
            let stages = model.forwardStages
            var entered: [Int] = []
            for (i, stage) in stages.enumerated() { stage.registerForwardPreHook { _ in entered.append(i) } }
            _ = model.loss(tokens: Tensor(shape: [1, 4], ints: [1, 2, 3, 4]), labels: Tensor(shape: [1, 4], ints: [2, 3, 4, 5]))
            XCTAssertEqual(entered, Array(stages.indices), "untied: \(untied)")
            XCTAssertEqual(stages.count, 2 + config.numLayers + 1 + (untied ? 1 : 0), "word and position embeddings, layers, final norm, output layer")
        }
    }

    /// A fully recomputed layer enters its forward again when backward replays it.
    func testRecomputedLayerRunsItsHooksAgainInBackward() throws {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32)
        let model = GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8)
        model.decoder.recomputedLayers = [1]
        var count = 0
        model.decoder.layers[1].registerForwardPreHook { _ in count += 1 }
        let loss = model.loss(tokens: Tensor(shape: [1, 4], ints: [1, 2, 3, 4]), labels: Tensor(shape: [1, 4], ints: [2, 3, 4, 5]))
        XCTAssertEqual(count, 1)
        loss.sum().backward()
        XCTAssertEqual(count, 2)
    }
}
