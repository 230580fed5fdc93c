import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

final class ModuleTests: XCTestCase {
    func tinyConfig(_ configure: (inout TransformerConfig) -> Void = { _ in }) throws -> TransformerConfig {
        var c = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32,
                                      hiddenDropout: 0, attentionDropout: 0)
        configure(&c)
        return c
    }

    /// RoPE keeps bf16 activations bf16 (tables cast to x's dtype, as Megatron), its cached tables give the
    /// same result on a second call, and position 0 is the identity.
    func testRotaryEmbeddingKeepsDTypeAndCachesTables() throws {
        let rope = RotaryEmbedding(kvChannels: 8, rotaryPercent: 1, base: 10000)
        let x = Tensor.normal([1, 2, 5, 8], generator: PhiloxGenerator(seed: 3)).cast(to: .bfloat16)
        let first = rope(x), second = rope(x)
        XCTAssertEqual(first.dtype, .bfloat16)
        XCTAssertEqual(first.floats(), second.floats())
        XCTAssertEqual(first.narrowed(2, start: 0, length: 1).floats(), x.narrowed(2, start: 0, length: 1).floats())
        XCTAssertNotEqual(first.narrowed(2, start: 1, length: 1).floats(), x.narrowed(2, start: 1, length: 1).floats())
        let tail = x.narrowed(2, start: 2, length: 3).madeContiguous()
        XCTAssertEqual(rope(tail, offset: 2).floats(), first.narrowed(2, start: 2, length: 3).floats())
    }

    func testParameterNamesFollowMegatron() throws {
        let model = GPTModel(config: try tinyConfig(), vocabSize: 32, maxSequenceLength: 8)
        let names = model.namedParameters().map(\.0)
        XCTAssertEqual(Array(names.prefix(4)), [
            "embedding.word_embeddings.weight", "embedding.position_embeddings.weight",
            "decoder.layers.0.input_layernorm.weight", "decoder.layers.0.input_layernorm.bias",
        ])
        for expected in ["decoder.layers.0.self_attention.linear_qkv.weight", "decoder.layers.1.self_attention.linear_proj.bias",
                         "decoder.layers.1.pre_mlp_layernorm.weight", "decoder.layers.1.mlp.linear_fc1.weight",
                         "decoder.layers.0.mlp.linear_fc2.bias", "decoder.final_layernorm.weight"] {
            XCTAssertTrue(names.contains(expected), expected)
        }
        XCTAssertFalse(names.contains("output_layer.weight"), "tied by default")
        let untied = GPTModel(config: try tinyConfig(), vocabSize: 32, maxSequenceLength: 8, untieEmbeddingsAndOutputWeights: true)
        XCTAssertEqual(untied.namedParameters().last?.0, "output_layer.weight")
    }

    func testInitializationScalesOutputProjections() throws {
        let config = try TransformerConfig(numLayers: 8, hiddenSize: 64, numAttentionHeads: 4, hiddenDropout: 0, attentionDropout: 0)
        let model = GPTModel(config: config, vocabSize: 64, maxSequenceLength: 8)
        func std(_ t: Tensor) -> Float {
            let v = t.floats()
            let mean = v.reduce(0, +) / Float(v.count)
            return (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(v.count)).squareRoot()
        }
        let layer = model.decoder.layers[0]
        XCTAssertEqual(std(layer.attention!.linearQKV.weight), 0.02, accuracy: 0.001)
        XCTAssertEqual(std((layer.mlp as! MLP).linearFC2.weight), 0.02 / 4, accuracy: 0.0003)
        XCTAssertEqual((layer.mlp as! MLP).linearFC1.bias!.floats().max(), 0)
    }

    func testStateDictRoundTripAndErrorsNameTheKey() throws {
        let a = GPTModel(config: try tinyConfig(), vocabSize: 32, maxSequenceLength: 8, seed: 1)
        let b = GPTModel(config: try tinyConfig(), vocabSize: 32, maxSequenceLength: 8, seed: 2)
        try b.loadStateDict(a.stateDict())
        XCTAssertEqual((b.decoder.layers[1].mlp as! MLP).linearFC1.weight.floats(), (a.decoder.layers[1].mlp as! MLP).linearFC1.weight.floats())
        var state = a.stateDict()
        state["decoder.final_layernorm.bias"] = Tensor.zeros([3])
        XCTAssertThrowsError(try b.loadStateDict(state)) { error in
            XCTAssertEqual(error as? StateDictError,
                           .shapeMismatch(key: "decoder.final_layernorm.bias", expected: [16], found: [3]))
        }
        state["decoder.final_layernorm.bias"] = Tensor.zeros([16], dtype: .bfloat16)
        XCTAssertThrowsError(try b.loadStateDict(state)) { error in
            XCTAssertEqual(error as? StateDictError, .dtypeMismatch(key: "decoder.final_layernorm.bias", expected: .float32, found: .bfloat16))
        }
        state.removeValue(forKey: "decoder.final_layernorm.bias")
        XCTAssertThrowsError(try b.loadStateDict(state)) { XCTAssertEqual($0 as? StateDictError, .missingKey("decoder.final_layernorm.bias")) }
        var extra = a.stateDict()
        extra["decoder.layers.9.mlp.linear_fc1.weight"] = Tensor.zeros([1])
        XCTAssertThrowsError(try b.loadStateDict(extra)) { XCTAssertEqual($0 as? StateDictError, .unexpectedKey("decoder.layers.9.mlp.linear_fc1.weight")) }
        XCTAssertNoThrow(try b.loadStateDict(extra, strict: false))
    }

    func testConfigValidationNamesTheProblem() {
        XCTAssertThrowsError(try TransformerConfig(numLayers: 2, hiddenSize: 30, numAttentionHeads: 4)) {
            XCTAssertTrue("\($0)".contains("divisible by num_attention_heads"), "\($0)")
        }
        XCTAssertThrowsError(try TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, numQueryGroups: 3)) {
            XCTAssertTrue("\($0)".contains("num_query_groups"), "\($0)")
        }
        XCTAssertThrowsError(try TransformerConfig(numLayers: 0, hiddenSize: 32, numAttentionHeads: 4))
    }

    func testEvalTurnsOffEveryDropout() throws {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, hiddenDropout: 0.5,
                                           attentionDropout: 0.5)
        let model = GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8)
        let tokens = Tensor(shape: [1, 6], ints: [3, 1, 4, 1, 5, 9])
        model.eval()
        let (a, b) = withoutGrad { (model(tokens).floats(), model(tokens).floats()) }
        XCTAssertEqual(a, b, "no dropout in eval mode")
        model.train()
        XCTAssertNotEqual(withoutGrad { model(tokens).floats() }, a, "dropout in training mode")
    }

    func testCausalityAndVariantsRun() throws {
        let variants: [(inout TransformerConfig) -> Void] = [
            { _ in },
            { $0.normalization = .rmsNorm; $0.gatedLinearUnit = true; $0.activation = .silu; $0.addBiasLinear = false
              $0.addQKVBias = false; $0.positionEmbeddingType = .rope; $0.numQueryGroups = 2 },
            { $0.qkLayernorm = true; $0.positionEmbeddingType = .rope; $0.rotaryPercent = 0.5 },
        ]
        for configure in variants {
            let model = GPTModel(config: try tinyConfig(configure), vocabSize: 32, maxSequenceLength: 8)
            let tokens = Tensor(shape: [1, 6], ints: [3, 1, 4, 1, 5, 9])
            let changed = Tensor(shape: [1, 6], ints: [3, 1, 4, 1, 5, 2])
            let (a, b) = withoutGrad { (model(tokens).floats(), model(changed).floats()) }
            XCTAssertEqual(a.count, 6 * 32)
            // Changing the last token must not change any earlier position's logits.
            XCTAssertEqual(Array(a[0..<(5 * 32)]), Array(b[0..<(5 * 32)]))
            XCTAssertNotEqual(Array(a[(5 * 32)...]), Array(b[(5 * 32)...]))
        }
    }
}

final class GPTGradientTests: XCTestCase {
    /// The loss's directional derivative along a random direction in parameter space equals grad · direction.
    func testWholeModelGradientMatchesFiniteDifferences() throws {
        try check(TransformerConfig(numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, ffnHiddenSize: 16,
                                    hiddenDropout: 0, attentionDropout: 0))
        try check(TransformerConfig(numLayers: 2, hiddenSize: 8, numAttentionHeads: 2, numQueryGroups: 1,
                                    ffnHiddenSize: 16, normalization: .rmsNorm, gatedLinearUnit: true,
                                    activation: .silu, hiddenDropout: 0, attentionDropout: 0,
                                    positionEmbeddingType: .rope))
    }

    func check(_ config: TransformerConfig, line: UInt = #line) {
        let model = GPTModel(config: config, vocabSize: 16, maxSequenceLength: 8, untieEmbeddingsAndOutputWeights: true)
        let tokens = Tensor(shape: [2, 5], ints: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        let labels = Tensor(shape: [2, 5], ints: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        model.loss(tokens: tokens, labels: labels).sum().backward()
        let params = model.namedParameters().map(\.1)
        let rng = PhiloxGenerator(seed: 5)
        // Small steps relative to the 0.02-scale weights: the final norm makes the loss sharply curved.
        let directions = params.map { Tensor.normal($0.shape, std: 0.01, generator: rng) }
        var predicted: Float = 0
        for (p, d) in zip(params, directions) {
            predicted += zip(p.grad!.floats(), d.floats()).map(*).reduce(0, +)
        }
        let originals = params.map { $0.floats() }
        func lossAt(_ step: Float) -> Float {
            for (i, p) in params.enumerated() {
                let moved = zip(originals[i], directions[i].floats()).map { $0 + step * $1 }
                withoutGrad { Ops.copy(Tensor(shape: p.shape, values: moved), into: p) }
            }
            return withoutGrad { model.loss(tokens: tokens, labels: labels).sum().item() }
        }
        let eps: Float = 1e-2
        let numeric = (lossAt(eps) - lossAt(-eps)) / (2 * eps)
        XCTAssertEqual(predicted, numeric, accuracy: 0.01 * abs(numeric), line: line)
    }
}
