import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// The acceptance tests of tensor parallelism: a GPT split over 2 and 4 thread ranks, with and without
/// sequence parallelism, computes what the single-rank model computes (logits, loss, gradients, and the
/// parameters after optimizer steps), in fp32.
final class TensorParallelModelTests: XCTestCase {
    /// What one rank (or the single-rank reference) reports after one forward and backward.
    struct Pass {
        var logits: Tensor
        var loss: Float
        var grads: [String: Tensor]
    }

    /// Runs one forward (logits without grad, then the loss) and backward on `model`, with the partial
    /// gradients summed over the group.
    static func pass(_ model: GPTModel) -> Pass {
        let (tokens, labels) = TinyGPT.batch()
        let logits = withoutGrad { model(tokens) }
        let loss = model.loss(tokens: tokens, labels: labels).mean()
        loss.backward()
        TensorParallelGradients.allReducePartial(model, group: model.tensorParallel)
        let grads = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.0, $0.1.grad!) })
        return Pass(logits: logits, loss: loss.item(), grads: grads)
    }

    static let layouts: [(size: Int, sequenceParallel: Bool)] = [(2, false), (2, true), (4, false), (4, true)]

    func checkForwardAndBackward(_ config: TransformerConfig, untied: Bool, _ family: String) throws {
        let whole = try TinyGPT.model(config, untied: untied)
        let reference = Self.pass(whole)
        for (size, sequenceParallel) in Self.layouts {
            let label = "\(family) TP=\(size)\(sequenceParallel ? " +SP" : "")"
            let ranks = try runRanks(size) { comm in
                let part = try whole.tensorParallelShard(for: TensorParallelGroup(comm, sequenceParallel: sequenceParallel), seed: 7)
                return (Self.pass(part), part.tensorParallelShardings())
            }
            for (rank, (result, _)) in ranks.enumerated() {
                XCTAssertLessThan(maxAbsDifference(result.logits, reference.logits), 1e-6, "\(label) rank \(rank) logits")
                XCTAssertEqual(result.loss, reference.loss, accuracy: 2e-6, "\(label) rank \(rank) loss")
            }
            let shardings = ranks[0].1
            assertDuplicatedAgree(ranks.map(\.0.grads), shardings, label)
            let merged = try TensorParallelResharding.merge(ranks.map(\.0.grads), shardings: shardings)
            assertClose(merged, reference.grads, tolerance: 1e-6, "\(label) gradients")
        }
    }

    /// Duplicated parameters must get the same gradient on every rank, or their copies would drift apart.
    func assertDuplicatedAgree(_ grads: [[String: Tensor]], _ shardings: [String: TensorParallelSharding],
                               _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        for (name, sharding) in shardings where sharding == .duplicated {
            for rank in 1..<grads.count {
                XCTAssertLessThan(maxAbsDifference(grads[rank][name]!, grads[0][name]!), 1e-6,
                                  "\(label): duplicated \(name) differs on rank \(rank)", file: file, line: line)
            }
        }
    }

    func testGPT2LikeMatchesSingleRank() throws {
        try checkForwardAndBackward(TinyGPT.gpt2(), untied: false, "GPT-2")
    }

    func testLlamaLikeMatchesSingleRank() throws {
        try checkForwardAndBackward(TinyGPT.llama(), untied: true, "LLaMA")
    }

    /// Gated DeltaNet's sectioned in_proj and conv1d, its per-head A_log / dt_bias and out_norm, and the
    /// attention output gate split by query groups.
    func testGatedDeltaNetHybridWithOutputGateMatchesSingleRank() throws {
        var config = try TinyGPT.llama()
        config.attentionOutputGate = true
        config.gatedDeltaNet = GatedDeltaNetConfig(layers: [true, false], convKernelDim: 3, keyHeadDim: 4, valueHeadDim: 6,
                                                   numKeyHeads: 4, numValueHeads: 8)
        try checkForwardAndBackward(config, untied: true, "GDN hybrid")
    }

    /// Query/key norms act per head, so their gradients are partial per rank even without sequence parallelism.
    func testQKLayernormGradientsAreSummedOverTheGroup() throws {
        try checkForwardAndBackward(TinyGPT.llama(qkLayernorm: true), untied: true, "LLaMA+QK-norm")
    }

    /// Gathering a split model's parameters over the group rebuilds the single-rank state dict on every rank.
    func testGatheredStateDictIsTheSingleRankOne() throws {
        for (config, untied) in [(try TinyGPT.gpt2(), false), (try TinyGPT.llama(), true)] {
            let whole = try TinyGPT.model(config, untied: untied)
            let gathered = try runRanks(4) { comm in
                let group = TensorParallelGroup(comm)
                return TensorParallelResharding.gather(try TinyGPT.model(config, untied: untied, group: group), group: group)
            }
            for (rank, state) in gathered.enumerated() {
                assertClose(state, whole.stateDict(), tolerance: 0, "gathered on rank \(rank)")
            }
        }
        let names = try TinyGPT.model(TinyGPT.llama(), untied: true).tensorParallelDuplicatedParameters()
        XCTAssertTrue(names.contains("decoder.layers.1.pre_mlp_layernorm.weight"))
        XCTAssertFalse(names.contains("decoder.layers.1.mlp.linear_fc1.weight"))
    }

    /// Cached decoding on split models (each rank caches its own key/value groups) continues a prompt as
    /// the single-rank model does.
    func testGreedyGenerationMatchesSingleRank() throws {
        let whole = try TinyGPT.model(TinyGPT.llama(), untied: true)
        let options = SamplingOptions(temperature: 0)
        let reference = whole.generate(prompt: [3, 14, 15, 9], vocabSize: TinyGPT.vocabSize, maxNewTokens: 6, options: options)
        let ranks = try runRanks(2) { comm in
            try whole.tensorParallelShard(for: TensorParallelGroup(comm), seed: 7)
                .generate(prompt: [3, 14, 15, 9], vocabSize: TinyGPT.vocabSize, maxNewTokens: 6, options: options)
        }
        for result in ranks {
            XCTAssertEqual(result.tokens, reference.tokens)
            for (a, b) in zip(result.logProbabilities, reference.logProbabilities) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
    }

    /// Full recomputation replays each layer, collectives included, in backward: same gradients.
    func testRecomputedLayersMatchSingleRank() throws {
        let whole = try TinyGPT.model(TinyGPT.llama(), untied: true)
        let reference = Self.pass(whole)
        let ranks = try runRanks(2) { comm in
            let part = try whole.tensorParallelShard(for: TensorParallelGroup(comm, sequenceParallel: true), seed: 7)
            part.decoder.recomputedLayers = [0, 1]
            return Self.pass(part).grads
        }
        let merged = try TensorParallelResharding.merge(ranks, shardings: whole.tensorParallelShardings())
        assertClose(merged, reference.grads, tolerance: 1e-6, "recomputed TP=2 +SP gradients")
    }

    /// A model with its optimizer (Megatron's default parameter groups) stepping through `TrainingStep` on the
    /// fixed batch, over a job that is the model's tensor-parallel group.
    final class Trainer {
        let model: GPTModel
        let optimizer: TrainingOptimizer
        let step: TrainingStep
        var scheduler: OptimizerParamScheduler

        init(_ model: GPTModel, rule: UpdateRule) throws {
            self.model = model
            let parallel = try model.tensorParallel.communicator.map {
                try ParallelState(layout: ParallelLayout(worldSize: $0.size, tensor: $0.size), world: $0)
            } ?? .singleRank()
            let groups = try ParamGroup.megatronDefault(model.namedParameters())
            optimizer = try TrainingOptimizer(model: model, groups: groups, rule: rule, parallel: parallel)
            step = TrainingStep(model: model, optimizer: optimizer, parallel: parallel)
            scheduler = try OptimizerParamScheduler(
                .init(maxLR: 1e-2, lrDecaySteps: 10, lrDecayStyle: .constant, startWD: 0.1, endWD: 0.1, wdIncrSteps: 10),
                groups: groups.map(\.override))
        }

        func steps(_ count: Int) throws {
            let (tokens, labels) = TinyGPT.batch()
            for _ in 0..<count {
                _ = try step.run(microBatches: 1, samples: tokens.shape[0], scheduler: &scheduler) { _ in
                    TrainingBatch(tokens: tokens, labels: labels)
                }
            }
        }
    }

    /// Three optimizer steps on every rank's shard keep the merged parameters equal to the single-rank run.
    func checkTraining(_ config: TransformerConfig, untied: Bool, rule: @escaping () throws -> UpdateRule,
                       _ label: String) throws {
        let start = try TinyGPT.model(config, untied: untied)
        let shardings = start.tensorParallelShardings()
        let whole = try TinyGPT.model(config, untied: untied)
        try Trainer(whole, rule: rule()).steps(3)
        for (size, sequenceParallel) in [(2, true), (4, false)] {
            let name = "\(label) TP=\(size)\(sequenceParallel ? " +SP" : "")"
            let states = try runRanks(size) { comm in
                let part = try start.tensorParallelShard(for: TensorParallelGroup(comm, sequenceParallel: sequenceParallel), seed: 7)
                try Trainer(part, rule: rule()).steps(3)
                return part.stateDict()
            }
            assertDuplicatedAgree(states, shardings, name)
            let merged = try TensorParallelResharding.merge(states, shardings: shardings)
            assertClose(merged, whole.stateDict(), tolerance: 2e-5, "\(name) parameters after 3 steps")
        }
    }

    /// Model and AdamW state saved at TP=2 (+SP) after 3 steps, merged, split for TP=4 and loaded there: one
    /// more step gives the single-rank run's parameters after 4 steps.
    func testTrainingResumesAfterReshardingFromTP2ToTP4() throws {
        let config = try TinyGPT.llama()
        let rule = { try AdamRule.adamW(eps: 1e-6) }
        let start = try TinyGPT.model(config, untied: true)
        let whole = try TinyGPT.model(config, untied: true)
        try Trainer(whole, rule: rule()).steps(4)

        let saved = try runRanks(2) { comm in
            let part = try start.tensorParallelShard(for: TensorParallelGroup(comm, sequenceParallel: true), seed: 7)
            let trainer = try Trainer(part, rule: rule())
            try trainer.steps(3)
            return (model: part.stateDict(), optimizer: try trainer.optimizer.stateTensors(), steps: trainer.optimizer.stepCount)
        }
        let shardings = start.tensorParallelShardings()
        let model = try TensorParallelResharding.merge(saved.map(\.model), shardings: shardings)
        let optimizerShardings = try TensorParallelResharding.optimizerStateShardings(
            keys: saved[0].optimizer.keys, parameterShardings: shardings)
        let optimizer = try TensorParallelResharding.merge(saved.map(\.optimizer), shardings: optimizerShardings)

        let resumed = try runRanks(4) { comm in
            let group = TensorParallelGroup(comm)
            let part = try TinyGPT.model(config, untied: true, group: group, seed: 99)
            try part.loadStateDict(TensorParallelResharding.shard(model, shardings: shardings, rank: comm.rank, size: 4))
            let trainer = try Trainer(part, rule: rule())
            try trainer.optimizer.loadState(
                TensorParallelResharding.shard(optimizer, shardings: optimizerShardings, rank: comm.rank, size: 4),
                stepCount: saved[0].steps)
            try trainer.steps(1)
            return part.stateDict()
        }
        let merged = try TensorParallelResharding.merge(resumed, shardings: shardings)
        assertClose(merged, whole.stateDict(), tolerance: 2e-5, "TP=2 -> TP=4 resumed parameters after 4 steps")
    }

    /// The key biases' true gradient is zero (softmax ignores a shift shared by all keys), so theirs is pure
    /// rounding noise, which Adam with eps 1e-8 would scale up to full learning-rate steps in directions
    /// that differ between layouts; eps 1e-6 keeps that noise small without touching real gradients (~1e-3).
    func testGPT2LikeAdamWStepsMatchSingleRank() throws {
        try checkTraining(TinyGPT.gpt2(), untied: false, rule: { try AdamRule.adamW(eps: 1e-6) }, "GPT-2 AdamW")
    }

    func testLlamaLikeSGDStepsMatchSingleRank() throws {
        try checkTraining(TinyGPT.llama(), untied: true, rule: { try SGDRule(momentum: 0.9) }, "LLaMA SGD")
    }
}
