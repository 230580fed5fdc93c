import Foundation
import XCTest
import MegatronAutograd
import MegatronCore
import MegatronData
import MegatronParallel
import MegatronTensor
@testable import MegatronTraining

/// Megatron's training features in the loop: per-token loss, batch-size ramp-up, decoupled learning rate,
/// selective recompute and the exit flags.
final class ModelFeatureTrainingTests: XCTestCase {
    let model = "--num-layers 1 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        + "--micro-batch-size 2 --lr 3e-3 --log-interval 1 --eval-iters 1 --eval-interval 1000 --hidden-dropout 0 "
        + "--attention-dropout 0 --device cpu "
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("model-features-\(UUID().uuidString)")

    func parse(_ line: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(line.split(separator: " ").map(String.init))
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Flags for a small indexed dataset of short documents whose end-of-document tokens are masked
    /// (`--eod-mask-loss`), so micro-batches keep different numbers of tokens.
    func maskedData() throws -> String {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let eod = try buildTokenizer(TokenizerOptions(type: .null, vocabSize: 500)).eod
        let prefix = directory.appendingPathComponent("docs").path
        let builder = try IndexedDatasetBuilder(binPath: prefix + ".bin", dtype: .optimal(vocabSize: 500))
        var state: UInt64 = 42
        for _ in 0..<300 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let length = 3 + Int(state >> 59)
            let tokens = (0..<length).map { ($0 * 37 + Int(state >> 40)) % 400 }
            try builder.addDocument(tokens + [eod], lengths: [length + 1])
        }
        try builder.finalize(idxPath: prefix + ".idx")
        return "--data-path \(prefix) --split 98,2,0 --data-cache-path \(directory.path)/cache --tokenizer-type NullTokenizer "
            + "--vocab-size 500 --eod-mask-loss "
    }

    /// `--calculate-per-token-loss`: one SGD step (lr 1) moves the parameters by the gradient of the summed
    /// token losses of the whole batch divided by its unmasked tokens, not by the mean of the micro-batches'
    /// means (which differs here: the micro-batches keep different token counts).
    func testPerTokenLossDividesTheSummedGradientsByTheBatchsTokens() throws {
        let args = try parse(model + maskedData() + "--global-batch-size 4 --train-iters 1 --optimizer sgd --sgd-momentum 0 "
                             + "--weight-decay 0 --clip-grad 0 --lr 1 --lr-decay-style constant --calculate-per-token-loss")
        let trainer = try Pretrainer(arguments: args) { _ in }
        let batches = try [0, 2].map { try trainer.trainData.batch(startingAt: $0, size: 2) }
        XCTAssertNotEqual(batches[0].maskedTokens, batches[1].maskedTokens, "the test needs unequal token counts")
        func gradients(_ loss: ([MicroBatchLoss]) -> Tensor) -> [String: [Float]] {
            for (_, p) in trainer.model.namedParameters() { p.grad = nil }
            loss(batches.map { trainer.model.maskedLoss($0) }).backward()
            defer { for (_, p) in trainer.model.namedParameters() { p.grad = nil } }
            return Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.grad!.floats()) })
        }
        let total = Float(batches.map(\.maskedTokens).reduce(0, +))
        let perToken = gradients { ($0[0].sum + $0[1].sum) * (1 / total) }
        let perMicroBatch = gradients { $0.map { $0.sum * (1 / Float(2 * $0.tokens)) }.reduce(Tensor(scalar: 0), +) }
        let before = Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.floats()) })
        _ = try trainer.run()
        var separated = false
        for (name, p) in trainer.model.namedParameters() {
            let step = zip(before[name]!, p.floats()).map { $0 - $1 }
            let worst = zip(step, perToken[name]!).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-5 * max(1, perToken[name]!.map(abs).max()!), name)
            separated = separated || zip(perToken[name]!, perMicroBatch[name]!).contains { abs($0 - $1) > 1e-4 }
        }
        XCTAssertTrue(separated, "per-token and per-micro-batch gradients must differ for the test to tell them apart")
    }

    /// Per-token loss on data-parallel ranks: the tokens are counted over all ranks, so two ranks train as one.
    func testPerTokenLossOnDataParallelRanksMatchesOneRank() throws {
        let args = try parse(model + maskedData() + "--global-batch-size 8 --train-iters 2 --calculate-per-token-loss")
        func run(dp: Int) throws -> ([Double], [String: [Float]]) {
            try ThreadCommunicator.run(worldSize: dp) { world -> ([Double], [String: [Float]]) in
                let trainer = try Pretrainer(arguments: args, parallel: try ParallelState(layout: ParallelLayout(worldSize: world.size), world: world)) { _ in }
                let summary = try trainer.run()
                return (summary.intervalLosses, Dictionary(uniqueKeysWithValues: trainer.model.namedParameters().map { ($0.0, $0.1.floats()) }))
            }[0]
        }
        let (singleLosses, single) = try run(dp: 1)
        let (parallelLosses, parallel) = try run(dp: 2)
        for (a, b) in zip(parallelLosses, singleLosses) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        for (name, values) in single {
            XCTAssertLessThan(zip(parallel[name]!, values).map { abs($0 - $1) }.max()!, 1e-5, name)
        }
    }

    /// `--rampup-batch-size 2 2 8` to a global batch of 6 over 30 samples: batches 2, 2, 4, 6, 6, 6 (Megatron's
    /// calculator; scripts/fixtures/rampup_golden.py), each logged with its size and the samples consumed.
    func testRampupGrowsTheBatchAsMegatron() throws {
        let args = try parse(model + "--global-batch-size 6 --train-samples 30 --rampup-batch-size 2 2 8")
        var lines: [String] = []
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        XCTAssertEqual(summary.iterations, 6)
        let logged = lines.filter { $0.contains("consumed samples:") }
        XCTAssertEqual(logged.count, 6, lines.joined(separator: "\n"))
        for (line, (batch, consumed)) in zip(logged, [(2, 2), (2, 4), (4, 8), (6, 14), (6, 20), (6, 26)]) {
            XCTAssertTrue(line.contains(String(format: "global batch size: %5d |", batch)), line)
            XCTAssertTrue(line.contains(String(format: "consumed samples: %12d |", consumed)), line)
        }
    }

    /// `--decoupled-lr`: the word embeddings and the untied output layer follow their own max / min lr; the
    /// position embeddings and the rest keep the run's, which is the one logged.
    func testDecoupledLearningRateGroupsTheEmbeddingAndOutputWeights() throws {
        let args = try parse(model + "--global-batch-size 2 --train-iters 2 --untie-embeddings-and-output-weights "
                             + "--decoupled-lr 0.5 --decoupled-min-lr 0.25")
        let trainer = try Pretrainer(arguments: args) { _ in }
        let decoupled = trainer.optimizer.groups.filter { $0.override.maxLR != nil }
        XCTAssertEqual(Set(decoupled.flatMap { $0.parameters.map(\.name) }),
                       ["embedding.word_embeddings.weight", "output_layer.weight"])
        for group in decoupled {
            XCTAssertEqual(group.override.maxLR, 0.5)
            XCTAssertEqual(group.override.minLR, 0.25)
        }
        let scheduler = trainer.schedule.scheduler
        let index = trainer.optimizer.groups.firstIndex { $0.override.maxLR != nil }!
        XCTAssertEqual(scheduler.learningRate(group: index), 0.5, accuracy: 1e-9)
        XCTAssertEqual(Double(trainer.schedule.loggedLearningRate), 3e-3, accuracy: 1e-9)
    }

    /// `--recompute-activations` trains the same as without recompute.
    func testSelectiveRecomputeTrainsAsThePlainRun() throws {
        func losses(_ extra: String) throws -> [Double] {
            let args = try parse(model + "--global-batch-size 4 --train-iters 3 --attention-dropout 0.1 " + extra)
            let trainer = try Pretrainer(arguments: args) { _ in }
            XCTAssertEqual(trainer.model.decoder.layers[0].recomputedModules,
                           extra.isEmpty ? [] : [.coreAttention, .mlp], extra)
            return try trainer.run().intervalLosses
        }
        let plain = try losses("")
        let recomputed = try losses("--recompute-activations --recompute-modules core_attn mlp")
        for (a, b) in zip(plain, recomputed) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    /// Selective recompute on tensor-parallel ranks with sequence parallelism and dropout: the replayed MLP repeats
    /// its collectives and the attention its split dropout mask, so the run trains as without recompute.
    func testSelectiveRecomputeUnderTensorParallelism() throws {
        func losses(_ extra: String) throws -> [Double] {
            let args = try parse(model + "--global-batch-size 4 --train-iters 2 --hidden-dropout 0.2 --attention-dropout 0.1 "
                                 + "--tensor-model-parallel-size 2 --sequence-parallel " + extra)
            return try ThreadCommunicator.run(worldSize: 2) { comm -> [Double] in
                let training = try TrainingWorld.make(args, world: comm)
                return try Pretrainer(arguments: args, parallel: training.parallel) { _ in }.run().intervalLosses
            }[0]
        }
        let plain = try losses("")
        let recomputed = try losses("--recompute-activations --recompute-modules core_attn mlp")
        XCTAssertEqual(plain.count, 2)
        for (a, b) in zip(plain, recomputed) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    /// `--exit-signal SIGUSR1` with `--exit-signal-handler`: the signal stops the run after the iteration in flight.
    func testExitSignalStopsTraining() throws {
        let args = try parse(model + "--global-batch-size 2 --train-iters 200 --exit-signal-handler --exit-signal SIGUSR1")
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: args) { lines.append($0) }
        trainer.onIteration = { iteration, _, _, _ in
            if iteration == 2 { kill(getpid(), SIGUSR1) }
            if iteration > 2 { usleep(20_000) }   // the signal source runs on another thread
        }
        let summary = try trainer.run()
        XCTAssertLessThan(summary.iterations, 200)
        XCTAssertTrue(lines.contains("> exiting: received SIGUSR1"), lines.suffix(3).joined(separator: "\n"))
    }

    /// `--exit-duration-in-mins` counts from each rank's start-up; the ranks agree to stop together. Rank 1 starts
    /// 2 s after rank 0 here, so only rank 0 is past the 1.5 s budget after the first iteration: both stop there.
    func testExitDurationIsAgreedOverTheRanks() throws {
        let args = try parse(model + "--global-batch-size 4 --train-iters 50 --exit-duration-in-mins 0.025")
        let iterations = try ThreadCommunicator.run(worldSize: 2) { world -> Int in
            if world.rank == 1 { Thread.sleep(forTimeInterval: 2) }
            let trainer = try Pretrainer(arguments: args, parallel: try ParallelState(layout: ParallelLayout(worldSize: world.size), world: world)) { _ in }
            return try trainer.run().iterations
        }
        XCTAssertEqual(iterations, [1, 1])
    }

    func testExitOnMissingCheckpoint() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let args = try parse(model + "--global-batch-size 2 --train-iters 2 --load \(empty.path) --exit-on-missing-checkpoint")
        XCTAssertThrowsError(try Pretrainer(arguments: args) { _ in }) {
            for named in ["--exit-on-missing-checkpoint", "--load \(empty.path): no checkpoint"] {
                XCTAssertTrue("\($0)".contains(named), "\($0)")
            }
        }
        var lines: [String] = []
        _ = try Pretrainer(arguments: try parse(model + "--global-batch-size 2 --train-iters 2 --load \(empty.path)")) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.hasPrefix("WARNING: could not find a checkpoint") }, "\(lines)")
    }
}
