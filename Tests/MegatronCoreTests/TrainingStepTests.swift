import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTestSupport
import MegatronTensor
@testable import MegatronCore

/// The step driver itself on one rank: a replaced schedule is the one that runs, a non-finite step is
/// skipped without advancing the scheduler, and a schedule that runs nothing is an error.
final class TrainingStepTests: XCTestCase {
    /// Runs the micro-batches last to first (the gradient reduction still on the last one run), counting them.
    final class ReversedSchedule: ForwardBackwardSchedule {
        var forwards: [Int] = []

        func run(_ passes: ForwardBackwardPasses) throws {
            var lossSum: Tensor?, tokens = 0
            for (position, m) in (0..<passes.count).reversed().enumerated() {
                try passes.gradientSync(position) {
                    forwards.append(m)
                    let loss = try passes.forward(m)
                    lossSum = lossSum.map { $0 + loss.sum.detached() } ?? loss.sum.detached()
                    tokens += loss.tokens
                    if position == passes.count - 1 { try passes.lossesComputed(lossSum!, tokens) }
                    try passes.backward(loss)
                }
            }
        }
    }

    /// The tiny GPT of the data-parallel tests with SGD, whose update follows the gradient smoothly (Adam would
    /// blow the rounding noise of near-zero gradients up to whole learning-rate steps).
    func makeStep() throws -> (TrainingStep, OptimizerParamScheduler) {
        let model = try DPTraining.model(.float32)
        let groups = try ParamGroup.megatronDefault(model.namedParameters())
        let parallel = ParallelState.singleRank()
        let optimizer = try TrainingOptimizer(model: model, groups: groups, rule: try SGDRule(momentum: 0.9), parallel: parallel)
        return (TrainingStep(model: model, optimizer: optimizer, parallel: parallel, clipGrad: 1), try DPTraining.scheduler(groups))
    }

    static func batch(_ m: Int) -> TrainingBatch {
        let (tokens, labels) = DPTraining.batch(step: 0, samples: (2 * m)..<(2 * m + 2))
        return TrainingBatch(tokens: tokens, labels: labels)
    }

    /// Gradient accumulation does not depend on the order of the micro-batches: the reversed schedule gives the
    /// default schedule's loss and parameters (to the fp32 rounding of the summation order), and it ran.
    func testAReplacedScheduleRunsTheMicroBatches() throws {
        let (plain, start) = try makeStep()
        var plainScheduler = start
        let expected = try plain.run(microBatches: 4, samples: 8, scheduler: &plainScheduler, batch: Self.batch)
        let (reversed, reversedStart) = try makeStep()
        var scheduler = reversedStart
        let schedule = ReversedSchedule()
        reversed.schedule = schedule
        let found = try reversed.run(microBatches: 4, samples: 8, scheduler: &scheduler, batch: Self.batch)
        XCTAssertEqual(schedule.forwards, [3, 2, 1, 0])
        XCTAssertEqual(found.loss, expected.loss, accuracy: 1e-6)
        XCTAssertEqual(found.gradNorm, expected.gradNorm, accuracy: 1e-5)
        XCTAssertTrue(found.updated)
        XCTAssertEqual(scheduler.numSteps, 8, "the scheduler advances by the step's samples")
        let parameters = Dictionary(uniqueKeysWithValues: plain.model.namedParameters().map { ($0.0, $0.1.floats()) })
        for (name, parameter) in reversed.model.namedParameters() {
            assertClose(parameter.floats(), parameters[name]!, absolute: 1e-6, name)
        }
    }

    /// A NaN weight makes every gradient NaN: the step is skipped, the scheduler stays, the loss scaler backs off.
    func testANonFiniteStepIsSkipped() throws {
        let (step, start) = try makeStep()
        var scheduler = start
        let (_, tied) = step.model.namedParameters()[0]
        var values = tied.floats()
        values[0] = .nan
        Ops.copy(Tensor(shape: tied.shape, values: values), into: tied)
        let bits = { step.model.namedParameters().map { $0.1.floats().map(\.bitPattern) } }
        let before = bits()
        var scaler: (any GradScaler)? = try DynamicGradScaler(initialScale: 4, hysteresis: 1)
        let result = try step.run(microBatches: 2, samples: 4, scheduler: &scheduler, gradScaler: &scaler, batch: Self.batch)
        XCTAssertFalse(result.updated)
        XCTAssertEqual(scheduler.numSteps, 0)
        XCTAssertEqual(scaler?.scale, 2)
        XCTAssertTrue(bits() == before, "skipped: parameters unchanged")
    }

    /// The observer sees the two points of an iteration in order; a schedule that runs nothing is an error.
    func testObserverPointsAndAnEmptySchedule() throws {
        var (step, scheduler) = try makeStep()
        var points: [TrainingStep.Point] = []
        step.observer = { points.append($0) }
        _ = try step.run(microBatches: 1, samples: 2, scheduler: &scheduler, batch: Self.batch)
        XCTAssertEqual(points, [.backwardDone, .gradientsFinalized])
        (step, scheduler) = try makeStep()
        XCTAssertThrowsError(try step.run(microBatches: 0, samples: 0, scheduler: &scheduler, batch: Self.batch)) {
            XCTAssertTrue("\($0)".contains("ran no micro-batch"), "\($0)")
        }
    }
}
