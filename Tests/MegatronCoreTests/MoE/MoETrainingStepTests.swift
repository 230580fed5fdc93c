import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// A Mixtral-style tiny GPT through the training step: the aux and z losses join the gradient with Megatron's
/// backward scale (1 / micro-batches, as `MoEAuxLossAutoScaler.set_loss_scale`), the
/// log items come out averaged over micro-batches and MoE layers, and the expert bias moves once per step.
final class MoETrainingStepTests: XCTestCase {
    static func model(expertBias: Bool = false) throws -> GPTModel {
        var moe = MoEConfig(numExperts: 4, ffnHiddenSize: 24, layers: [true, false])
        moe.loadBalancing = [.init(kind: .auxLoss, coefficient: 0.1)]
        moe.zLossCoefficient = 0.01
        if expertBias { (moe.scoreFunction, moe.expertBias, moe.loadBalancing) = (.sigmoid, true, []) }
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, ffnHiddenSize: 48,
                                           normalization: .rmsNorm, gatedLinearUnit: true, activation: .silu,
                                           addBiasLinear: false, hiddenDropout: 0, attentionDropout: 0,
                                           positionEmbeddingType: .rope, moe: moe)
        return GPTModel(config: config, vocabSize: DPTraining.vocab, maxSequenceLength: DPTraining.sequence, seed: 5)
    }

    static func batch(_ m: Int) -> TrainingBatch {
        let (tokens, labels) = DPTraining.batch(step: 0, samples: (2 * m)..<(2 * m + 2))
        return TrainingBatch(tokens: tokens, labels: labels)
    }

    func step(_ model: GPTModel) throws -> TrainingStep {
        let groups = try ParamGroup.megatronDefault(model.namedParameters())
        let optimizer = try TrainingOptimizer(model: model, groups: groups, rule: try SGDRule(momentum: 0), parallel: .singleRank())
        return TrainingStep(model: model, optimizer: optimizer, parallel: .singleRank())
    }

    func testAuxLossesJoinTheGradientWithMegatronsScale() throws {
        let microBatches = 2
        // Reference: each micro-batch's lm loss over its tokens and the micro-batch count, the aux and z losses
        // (whose own gradients the router and layer tests check against Megatron and finite differences) at
        // Megatron's backward scale 1 / micro-batches.
        let reference = try Self.model()
        XCTAssertEqual(reference.moeLayers.count, 1, "--moe-layer-freq [1, 0]: one MoE layer")
        reference.moeLayers[0].router.auxLossBackwardScale = 1 / Float(microBatches)
        var logged: [String: Float] = [:]
        for m in 0..<microBatches {
            let loss = reference.maskedLoss(Self.batch(m))
            (loss.sum / Float(loss.tokens * microBatches)).backward()
            for (name, value) in reference.moeLayers[0].router.takeTrackedLosses() {
                logged[name, default: 0] += value.item() / Float(microBatches)
            }
        }
        // Without the aux losses the router's gradient differs: they do reach it.
        let plain = try Self.model()
        plain.moeLayers[0].router.auxLossBackwardScale = 0
        for m in 0..<microBatches {
            let loss = plain.maskedLoss(Self.batch(m))
            (loss.sum / Float(loss.tokens * microBatches)).backward()
        }
        XCTAssertNotEqual(plain.moeLayers[0].router.weight.grad!.floats(), reference.moeLayers[0].router.weight.grad!.floats())
        let model = try Self.model()
        let step = try step(model)
        var gradients: [String: [Float]] = [:]
        step.observer = { point in
            guard case .backwardDone = point else { return }
            for (name, p) in model.namedParameters() { gradients[name] = p.grad?.floats() }
        }
        var scheduler = try DPTraining.scheduler(try ParamGroup.megatronDefault(model.namedParameters()))
        let result = try step.run(microBatches: microBatches, samples: 4, scheduler: &scheduler, batch: Self.batch)
        for (name, p) in reference.namedParameters() {
            let expected = try XCTUnwrap(p.grad, name).floats(), found = try XCTUnwrap(gradients[name], name)
            let worst = zip(expected, found).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-6, name)
        }
        XCTAssertNotEqual(gradients["decoder.layers.0.mlp.router.weight"]?.contains { $0 != 0 }, false)
        XCTAssertEqual(Set(result.moeLosses.keys), ["load_balancing_loss", "z_loss"])
        for (name, value) in logged { XCTAssertEqual(result.moeLosses[name] ?? .nan, Double(value), accuracy: 1e-5, name) }
    }

    /// Aux-loss-free balancing: the step moves each expert's bias by ±rate toward the mean load, once.
    func testExpertBiasMovesOncePerStep() throws {
        let model = try Self.model(expertBias: true)
        let router = model.moeLayers[0].router
        var counts: [Float] = []
        let step = try step(model)
        step.observer = { point in
            if case .backwardDone = point { counts = router.tokensPerExpert!.floats() }
        }
        var scheduler = try DPTraining.scheduler(try ParamGroup.megatronDefault(model.namedParameters()))
        _ = try step.run(microBatches: 2, samples: 4, scheduler: &scheduler, batch: Self.batch)
        XCTAssertEqual(counts.reduce(0, +), Float(2 * 2 * DPTraining.sequence * 2), "tokens x top-2 over both micro-batches")
        let mean = counts.reduce(0, +) / Float(counts.count)
        let expected = counts.map { $0 < mean ? Float(1e-3) : ($0 > mean ? -1e-3 : 0) }
        XCTAssertEqual(router.expertBias!.floats(), expected)
        XCTAssertEqual(router.tokensPerExpert!.floats(), [0, 0, 0, 0], "the counts restart after the update")
    }

    /// Full recompute: the first forward runs without the tape, so the aux losses, their log values and the
    /// expert-bias counts come once, from the replay; gradients, logged losses and the bias match the plain run.
    func testFullRecomputeMatchesThePlainStep() throws {
        func run(recompute: Bool, expertBias: Bool) throws -> (grads: [String: [Float]], losses: [String: Double], bias: [Float]?) {
            let model = try Self.model(expertBias: expertBias)
            if recompute { model.decoder.recomputedLayers = [0, 1] }
            let step = try step(model)
            var grads: [String: [Float]] = [:]
            step.observer = { point in
                guard case .backwardDone = point else { return }
                for (name, p) in model.namedParameters() { grads[name] = p.grad?.floats() }
            }
            var scheduler = try DPTraining.scheduler(try ParamGroup.megatronDefault(model.namedParameters()))
            let result = try step.run(microBatches: 2, samples: 4, scheduler: &scheduler, batch: Self.batch)
            return (grads, result.moeLosses, model.moeLayers[0].router.expertBias?.floats())
        }
        for expertBias in [false, true] {
            let plain = try run(recompute: false, expertBias: expertBias), recomputed = try run(recompute: true, expertBias: expertBias)
            XCTAssertEqual(Set(recomputed.grads.keys), Set(plain.grads.keys))
            for (name, expected) in plain.grads {
                let worst = zip(expected, recomputed.grads[name]!).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-6, name)
            }
            XCTAssertEqual(recomputed.losses.keys.sorted(), plain.losses.keys.sorted())
            for (name, value) in plain.losses { XCTAssertEqual(recomputed.losses[name]!, value, accuracy: 1e-6, name) }
            XCTAssertEqual(recomputed.bias, plain.bias, "the bias moves once per step, from counts taken once")
        }
    }
}
