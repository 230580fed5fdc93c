import Foundation
import XCTest
import MegatronCore
@testable import MegatronTraining

final class PretrainerTests: XCTestCase {
    func testTwoLayerTransformerLossFallsOnCPU() throws {
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 4 "
             + "--global-batch-size 8 --train-iters 40 --lr 3e-3 --lr-warmup-iters 5 --log-interval 10 "
             + "--eval-iters 2 --hidden-dropout 0 --attention-dropout 0").split(separator: " ").map(String.init))
        var lines: [String] = []
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        XCTAssertEqual(summary.iterations, 40)
        let first = summary.intervalLosses.first!, last = summary.intervalLosses.last!
        XCTAssertGreaterThan(first, 5.0, "starts near log(384) = 5.95")
        XCTAssertLessThan(last, first - 1.5, "losses per interval: \(summary.intervalLosses)")
        XCTAssertLessThan(summary.validationLoss!, first - 1.5)
        XCTAssertTrue(lines.contains { $0.contains("iteration       40/      40 | consumed samples:          320 |") }, lines.joined(separator: "\n"))
    }

    func testLogLineMatchesMegatronFormat() {
        let entry = TrainingLogEntry(iteration: 1000, trainIters: 20000, consumedSamples: 256000,
                                     elapsedMillisecondsPerIteration: 5484.6, throughput: 250.1,
                                     learningRate: 9.999946e-05, globalBatchSize: 256, lmLoss: 3.147666,
                                     lossScale: 1, gradNorm: 0.514, skippedIterations: 0, nanIterations: 0)
        let line = entry.formatted(timestamp: Date(timeIntervalSince1970: 0))
        XCTAssertTrue(line.hasSuffix("] iteration     1000/   20000 | consumed samples:       256000 | elapsed time per iteration (ms): 5484.6 | throughput per GPU (TFLOP/s/GPU): 250.1 | learning rate: 9.999946E-05 | global batch size:   256 | lm loss: 3.147666E+00 | loss scale: 1.0 | grad norm: 0.514 | number of skipped iterations:   0 | number of nan iterations:   0 |"), line)
        XCTAssertTrue(line.hasPrefix(" [1970-01-01 00:00:00.000000]"), line)
    }

    func testFLOPsMatchMegatronsClosedForm() throws {
        // MHA, no SwiGLU, ffn = 4h: 72 B s L h^2 (1 + s/(12h) + V/(12 L h)).
        let config = try TransformerConfig(numLayers: 24, hiddenSize: 2048, numAttentionHeads: 16)
        let (b, s, v) = (4.0, 2048.0, 50304.0)
        let closed = 72 * b * s * 24 * 2048 * 2048 * (1 + s / (12 * 2048) + v / (12 * 24 * 2048))
        let ours = trainingFLOPs(config: config, vocabSize: 50304, sequenceLength: 2048, batchSize: 4)
        XCTAssertEqual(ours / closed, 1, accuracy: 1e-12)
    }

    /// An MoE layer counts the experts a token goes to and the shared expert (the active parameters): top-2 of
    /// experts 768 wide plus a shared expert 512 wide is a dense MLP 2048 wide; layers left dense keep theirs.
    func testMoEFLOPsCountTheActiveExperts() throws {
        func config(ffn: Int, moe: MoEConfig?) throws -> TransformerConfig {
            try TransformerConfig(numLayers: 4, hiddenSize: 256, numAttentionHeads: 4, ffnHiddenSize: ffn, gatedLinearUnit: true,
                                  activation: .silu, addBiasLinear: false, moe: moe)
        }
        func flops(_ c: TransformerConfig) -> Double { trainingFLOPs(config: c, vocabSize: 1000, sequenceLength: 128, batchSize: 2) }
        var moe = MoEConfig(numExperts: 8, ffnHiddenSize: 768, layers: [true, true, true, true])
        moe.sharedExpertIntermediateSize = 512
        XCTAssertEqual(flops(try config(ffn: 1024, moe: moe)) / flops(try config(ffn: 2048, moe: nil)), 1, accuracy: 1e-12)
        moe.layers = [false, true, false, true]
        let half = flops(try config(ffn: 1024, moe: moe))
        XCTAssertEqual(half, (flops(try config(ffn: 1024, moe: nil)) + flops(try config(ffn: 2048, moe: nil))) / 2, accuracy: half * 1e-12)
    }
}
