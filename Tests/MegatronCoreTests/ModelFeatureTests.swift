import XCTest
@testable import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// Initialization variants, zero-centred norms and selective recompute of `GPTModel` (the math of the
/// variants is pinned against PyTorch in `ModelFeatureGoldenTests`).
final class ModelFeatureTests: XCTestCase {
    func config(_ configure: (inout TransformerConfig) -> Void = { _ in }) throws -> TransformerConfig {
        var c = try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4, ffnHiddenSize: 96,
                                      hiddenDropout: 0, attentionDropout: 0)
        configure(&c)
        return c
    }

    func std(_ t: Tensor) -> Float {
        let v = t.floats()
        let mean = v.reduce(0, +) / Float(v.count)
        return (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(v.count)).squareRoot()
    }

    /// `--apply-layernorm-1p`: every norm (input, pre-MLP, q/k, final; LayerNorm and RMSNorm) starts with
    /// weight 0 and bias 0, and so starts as the plain norm with weight 1.
    func testZeroCenteredNormsStartAtZeroAndActAsWeightOne() throws {
        for normalization in [TransformerConfig.Normalization.layerNorm, .rmsNorm] {
            let centred = GPTModel(config: try config {
                $0.normalization = normalization
                $0.qkLayernorm = true
                $0.layernormZeroCenteredGamma = true
            }, vocabSize: 32, maxSequenceLength: 8)
            let plain = GPTModel(config: try config {
                $0.normalization = normalization
                $0.qkLayernorm = true
            }, vocabSize: 32, maxSequenceLength: 8)
            let norms = centred.namedParameters().filter { $0.0.contains("layernorm.") }
            XCTAssertEqual(norms.count, normalization == .layerNorm ? 18 : 9, "\(normalization): 4 norms a layer and the final one")
            for (name, p) in norms { XCTAssertEqual(Set(p.floats()), [0], "\(normalization) \(name)") }
            for (name, p) in plain.namedParameters() where name.hasSuffix("layernorm.weight") {
                XCTAssertEqual(Set(p.floats()), [1], "\(normalization) \(name)")
            }
            let tokens = Tensor(shape: [2, 8], ints: (0..<16).map { $0 % 32 })
            XCTAssertEqual(centred(tokens).floats(), plain(tokens).floats(), "\(normalization): 1 + 0 is the plain norm")
        }
    }

    /// Hugging Face's GPT-2 and LLaMA norms apply their weight as is: a zero-centred model has no export.
    func testZeroCenteredNormsHaveNoHuggingFaceArchitecture() throws {
        var llama = try TransformerConfig(numLayers: 2, hiddenSize: 64, numAttentionHeads: 4, normalization: .rmsNorm,
                                          gatedLinearUnit: true, activation: .silu, addBiasLinear: false,
                                          positionEmbeddingType: .rope)
        XCTAssertEqual(try HuggingFaceGPT.architecture(for: llama), .llama)
        llama.layernormZeroCenteredGamma = true
        XCTAssertThrowsError(try HuggingFaceGPT.architecture(for: llama)) { XCTAssertTrue("\($0)".contains("--apply-layernorm-1p")) }
    }

    /// The gradient of a zero-centred norm's weight is that of the plain norm's weight at 1 + w.
    func testZeroCenteredNormWeightGradientIsTheScalesGradient() {
        let x = Tensor.normal([3, 16], generator: PhiloxGenerator(seed: 1))
        let w = Tensor.normal([16], std: 0.1, generator: PhiloxGenerator(seed: 2))
        let centred = LayerNorm(16, zeroCenteredGamma: true), plain = LayerNorm(16)
        centred.weight.storage.pointer.assumingMemoryBound(to: Float.self).update(from: w.floats(), count: 16)
        plain.weight.storage.pointer.assumingMemoryBound(to: Float.self).update(from: (w + 1).floats(), count: 16)
        let a = centred(x), b = plain(x)
        XCTAssertEqual(a.floats(), b.floats())
        (a * a).sum().backward()
        (b * b).sum().backward()
        XCTAssertEqual(centred.weight.grad!.floats(), plain.weight.grad!.floats())
        XCTAssertEqual(centred.bias.grad!.floats(), plain.bias.grad!.floats())
    }

    /// Megatron's init: N(0, std) for QKV / fc1 / the untied output layer, std / sqrt(2 L) for the output
    /// projections, `--embedding-init-method-std` for word and position embeddings only.
    func testEmbeddingInitStdAppliesToTheEmbeddingsOnly() throws {
        let model = GPTModel(config: try config { $0.embeddingInitMethodStd = 0.5 }, vocabSize: 512, maxSequenceLength: 256,
                             untieEmbeddingsAndOutputWeights: true)
        XCTAssertEqual(std(model.wordEmbeddings!.weight), 0.5, accuracy: 0.01)
        XCTAssertEqual(std(model.positionEmbeddings!.weight), 0.5, accuracy: 0.01)
        XCTAssertEqual(std(model.outputLayer!.weight), 0.02, accuracy: 0.001)
        XCTAssertEqual(std(model.decoder.layers[0].attention!.linearQKV.weight), 0.02, accuracy: 0.001)
        XCTAssertEqual(std(model.decoder.layers[0].attention!.linearProj.weight), 0.01, accuracy: 0.0005)
    }

    /// `--init-method-xavier-uniform`: every weight matrix U(-a, a), a = sqrt(6 / (fan_in + fan_out)) of the whole
    /// matrix (its std a / sqrt(3)), the output projections and embeddings included; biases stay zero.
    func testXavierUniformInitUsesEachMatrixsFans() throws {
        let model = GPTModel(config: try config { $0.initMethodXavierUniform = true }, vocabSize: 256, maxSequenceLength: 64,
                             untieEmbeddingsAndOutputWeights: true)
        let layer = model.decoder.layers[1]
        for (name, weight) in [("word embeddings", model.wordEmbeddings!.weight), ("positions", model.positionEmbeddings!.weight),
                               ("linear_qkv", layer.attention!.linearQKV.weight),
                               ("linear_proj", layer.attention!.linearProj.weight),
                               ("linear_fc1", (layer.mlp as! MLP).linearFC1.weight), ("linear_fc2", (layer.mlp as! MLP).linearFC2.weight),
                               ("output_layer", model.outputLayer!.weight)] {
            let bound = Float((6 / Double(weight.shape[0] + weight.shape[1])).squareRoot())
            let values = weight.floats()
            XCTAssertLessThanOrEqual(values.map(abs).max()!, bound, name)
            XCTAssertGreaterThan(values.map(abs).max()!, 0.95 * bound, name)
            XCTAssertEqual(std(weight), bound / Float(3).squareRoot(), accuracy: 0.05 * bound, name)
        }
        XCTAssertEqual(Set((layer.mlp as! MLP).linearFC1.bias!.floats()), [0])
    }

    /// `--kv-channels` unequal to hidden / heads: QKV is `(heads + 2 groups) x kv` wide and the output
    /// projection reads `heads x kv` features.
    func testKVChannelsSetTheProjectionShapes() throws {
        let model = GPTModel(config: try config {
            $0.kvChannels = 24
            $0.numQueryGroups = 2
        }, vocabSize: 32, maxSequenceLength: 8)
        let attention = model.decoder.layers[0].attention!
        XCTAssertEqual(attention.linearQKV.weight.shape, [(4 + 2 * 2) * 24, 64])
        XCTAssertEqual(attention.linearProj.weight.shape, [64, 4 * 24])
        XCTAssertEqual(model(Tensor(shape: [1, 8], ints: Array(0..<8))).shape, [1, 8, 32])
    }

    /// Selective recompute (core attention, MLP, both) gives the loss and gradients of the plain run, with
    /// attention and hidden dropout on: the replay draws the same masks.
    func testSelectiveRecomputeMatchesThePlainRun() throws {
        try compareSelectiveRecompute(config {
            $0.hiddenDropout = 0.1
            $0.attentionDropout = 0.2
        }, device: .cpu, tolerance: 1e-6)
    }

    /// The same on the GPU: fp32 with dropout (materialized attention, GPU dropout masks replayed) and bf16
    /// without (the fused attention kernels run twice; their backward may accumulate in another order).
    func testSelectiveRecomputeMatchesThePlainRunOnTheGPU() throws {
        try requireGPU("GPU recompute test")
        try compareSelectiveRecompute(config {
            $0.hiddenDropout = 0.1
            $0.attentionDropout = 0.2
        }, device: .cuda(0), tolerance: 1e-5)
        try compareSelectiveRecompute(config { $0.paramsDType = .bfloat16 }, device: .cuda(0), tolerance: 2e-2)
    }

    /// Loss and gradients with each set of recomputed modules within `tolerance` (relative to the largest
    /// magnitude) of the plain run's.
    func compareSelectiveRecompute(_ config: TransformerConfig, device: Device, tolerance: Float,
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let tokens = Tensor(shape: [2, 8], ints: (0..<16).map { ($0 * 7) % 32 }).to(device)
        let labels = Tensor(shape: [2, 8], ints: (0..<16).map { ($0 * 5 + 1) % 32 }).to(device)
        func run(_ modules: Set<RecomputedModule>) -> (Float, [String: [Float]]) {
            let model = onDevice(device) { GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8, seed: 7) }
            model.decoder.recomputedModules = modules
            let loss = model.loss(tokens: tokens, labels: labels).mean()
            XCTAssertEqual(nodeNames(from: loss).filter { $0 == "checkpoint" }.count, 2 * modules.count, "\(modules)",
                           file: file, line: line)
            loss.backward()
            return (loss.item(), Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.0, $0.1.grad!.floats()) }))
        }
        let (plainLoss, plainGrads) = run([])
        for modules: Set<RecomputedModule> in [[.coreAttention], [.mlp], [.coreAttention, .mlp]] {
            let (loss, grads) = run(modules)
            XCTAssertEqual(loss, plainLoss, accuracy: tolerance * abs(plainLoss), "\(device) \(modules)", file: file, line: line)
            for (name, g) in plainGrads {
                let worst = zip(g, grads[name]!).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, tolerance * max(1e-3, g.map(abs).max()!), "\(device) \(modules) \(name)",
                                         file: file, line: line)
            }
        }
    }

    /// The names of the autograd nodes `t` depends on, each node once.
    func nodeNames(from t: Tensor) -> [String] {
        var seen = Set<ObjectIdentifier>(), names: [String] = []
        var stack = (t.autograd?.gradFunction as? Node).map { [$0] } ?? []
        while let node = stack.popLast() {
            guard seen.insert(ObjectIdentifier(node)).inserted else { continue }
            names.append(node.name)
            for case .node(let next, _)? in node.edges { stack.append(next) }
        }
        return names
    }
}
