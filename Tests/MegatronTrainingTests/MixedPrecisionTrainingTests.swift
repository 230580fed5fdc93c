import XCTest
@testable import MegatronTraining

final class MixedPrecisionTrainingTests: XCTestCase {
    func run(_ extra: String) throws -> (Pretrainer.Summary, [String]) {
        let args = try MegatronArgumentParser.parse(
            ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 --micro-batch-size 4 "
             + "--train-iters 30 --lr 3e-3 --log-interval 1 --eval-iters 1 --hidden-dropout 0 --attention-dropout 0 "
             + extra).split(separator: " ").map(String.init))
        var lines: [String] = []
        let summary = try Pretrainer(arguments: args) { lines.append($0) }.run()
        return (summary, lines)
    }

    func testBF16ParametersTrainWithFP32Masters() throws {
        let (summary, _) = try run("--bf16")
        XCTAssertLessThan(summary.intervalLosses.last!, summary.intervalLosses.first! - 1, "\(summary.intervalLosses)")
    }

    func testFP16OverflowSkipsStepsAndBacksOffTheLossScale() throws {
        // fp16 gradients overflow above 65504: with a scale of 2^24 the logits' gradient (scale / 128 tokens)
        // does, so the first step is skipped; the dynamic
        // scaler halves its scale after each overflow (hysteresis 1), and once it is low enough updates go through.
        let (summary, lines) = try run("--fp16 --initial-loss-scale 16777216 --hysteresis 1")
        let iterationLines = lines.filter { $0.contains("] iteration ") }
        XCTAssertTrue(iterationLines[0].contains("lm loss: 0.000000E+00 | loss scale: 8388608.0 | number of skipped iterations:   1 | number of nan iterations:   0 |"),
                      iterationLines[0])
        let scales = iterationLines.compactMap { line -> Float? in
            guard let r = line.range(of: "loss scale: ") else { return nil }
            return Float(line[r.upperBound...].prefix { $0 != " " })
        }
        XCTAssertLessThan(scales.last!, 16_777_216, "backed off: \(scales)")
        XCTAssertTrue(iterationLines.last!.contains("number of skipped iterations:   0 |"), iterationLines.last!)
        XCTAssertLessThan(summary.intervalLosses.last!, 5.0, "updates went through: \(summary.intervalLosses)")
    }
}
