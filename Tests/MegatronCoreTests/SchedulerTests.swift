import Foundation
import MegatronCore
import XCTest

/// OptimizerParamScheduler against Megatron's own scheduler code (Fixtures/optim/schedulers.json).
final class SchedulerTests: XCTestCase {
    struct Config: Decodable {
        var name: String?
        var initLr: Double, maxLr: Double, minLr: Double, lrWarmupSteps: Double, lrDecaySteps: Int
        var lrDecayStyle: LRDecayStyle
        var startWd: Double, endWd: Double, wdIncrSteps: Int, wdIncrStyle: WeightDecayIncrementStyle
        var wsdDecaySteps: Int?, lrWsdDecayStyle: WSDDecayStyle?
        var useCheckpointOptParamScheduler: Bool?, overrideOptParamScheduler: Bool?

        var configuration: OptimizerParamScheduler.Configuration {
            .init(initLR: initLr, maxLR: maxLr, minLR: minLr, lrWarmupSteps: lrWarmupSteps, lrDecaySteps: lrDecaySteps,
                  lrDecayStyle: lrDecayStyle, startWD: startWd, endWD: endWd, wdIncrSteps: wdIncrSteps,
                  wdIncrStyle: wdIncrStyle, useCheckpointOptParamScheduler: useCheckpointOptParamScheduler ?? true,
                  overrideOptParamScheduler: overrideOptParamScheduler ?? false, wsdDecaySteps: wsdDecaySteps,
                  lrWSDDecayStyle: lrWsdDecayStyle ?? .exponential)
        }
    }
    struct Group: Decodable {
        var maxLr: Double?, minLr: Double?, startWd: Double?, endWd: Double?, wdMult: Double?
        var override: ParamGroupOverride {
            ParamGroupOverride(maxLR: maxLr, minLR: minLr, startWD: startWd, endWD: endWd, wdMult: wdMult)
        }
    }
    struct Row: Decodable { var numSteps: Int; var lr: [Double]; var wd: [Double] }
    struct Case: Decodable { var config: Config; var groups: [Group]; var increment: Int; var trajectory: [Row] }
    struct Load: Decodable {
        var rule: String, config: Config, error: String?
        var stateAfterLoad: [String: JSONScalar]?
        var trajectory: [Row]?
    }
    struct StateDictCases: Decodable {
        var savedConfig: Config
        var stateDict: [String: JSONScalar]
        var loads: [Load]
        var legacyStateDict: [String: JSONScalar]
        var legacyStateAfterLoad: [String: JSONScalar]
    }
    struct Fixture: Decodable { var cases: [Case]; var stateDict: StateDictCases }

    func testEveryDecayStyleMatchesMegatron() throws {
        let fixture = try loadOptimFixture("schedulers", as: Fixture.self)
        let styles = Set(fixture.cases.map { "\($0.config.lrDecayStyle.rawValue)/\($0.config.lrWsdDecayStyle?.rawValue ?? "-")" })
        XCTAssertEqual(styles.count, 8, "constant, linear, cosine, inverse-square-root and four WSD anneals: \(styles)")
        XCTAssertEqual(Set(fixture.cases.map(\.config.wdIncrStyle)), Set(WeightDecayIncrementStyle.allCases))
        for c in fixture.cases {
            var scheduler = try OptimizerParamScheduler(c.config.configuration, groups: c.groups.map(\.override))
            for (i, row) in c.trajectory.enumerated() {
                if i > 0 { scheduler.step(c.increment) }
                check(scheduler, against: row, c.config.name ?? "?")
            }
        }
    }

    func testStateDictHasMegatronKeysAndValues() throws {
        let cases = try loadOptimFixture("schedulers", as: Fixture.self).stateDict
        var scheduler = try OptimizerParamScheduler(cases.savedConfig.configuration)
        for _ in 0..<10 { scheduler.step(4) }
        let ours = try JSONDecoder().decode([String: JSONScalar].self, from: JSONEncoder().encode(scheduler.state()))
        XCTAssertEqual(ours, cases.stateDict)
    }

    func testLoadRulesMatchMegatron() throws {
        let cases = try loadOptimFixture("schedulers", as: Fixture.self).stateDict
        let saved = try decodeState(cases.stateDict)
        XCTAssertEqual(Set(cases.loads.map(\.rule)), ["use_checkpoint", "override", "neither"])
        for load in cases.loads {
            var scheduler = try OptimizerParamScheduler(load.config.configuration)
            if load.error != nil {
                let before = scheduler.state()
                XCTAssertThrowsError(try scheduler.load(saved), load.rule) {
                    XCTAssertTrue("\($0)".contains("learning rate"), "\($0)")
                }
                XCTAssertEqual(scheduler.state(), before, "a failed load changes nothing")
                continue
            }
            try scheduler.load(saved)
            XCTAssertEqual(scheduler.state(), try decodeState(load.stateAfterLoad!), load.rule)
            for row in load.trajectory! {
                scheduler.step(4)
                check(scheduler, against: row, "after load with \(load.rule)")
            }
        }
    }

    func testLegacyStateDictKeysLoad() throws {
        let cases = try loadOptimFixture("schedulers", as: Fixture.self).stateDict
        var config = cases.savedConfig.configuration
        config.useCheckpointOptParamScheduler = true
        var scheduler = try OptimizerParamScheduler(config)
        try scheduler.load(try decodeState(cases.legacyStateDict))
        XCTAssertEqual(scheduler.state(), try decodeState(cases.legacyStateAfterLoad))
    }

    func testScheduleArgumentsConvertIterationsToSamples() throws {
        let iters = try ScheduleArguments(trainIters: 100, globalBatchSize: 8, lr: 1e-3, lrDecayStyle: .wsd,
                                          lrWarmupFraction: 0.05, lrWSDDecayIters: 20).configuration()
        XCTAssertEqual(iters.lrDecaySteps, 800)
        XCTAssertEqual(iters.lrWarmupSteps, 40)
        XCTAssertEqual(iters.wsdDecaySteps, 160)
        XCTAssertEqual(iters.wdIncrSteps, 800)
        XCTAssertEqual(iters.startWD, 0.01)
        XCTAssertEqual(iters.endWD, 0.01)
        XCTAssertFalse(iters.useCheckpointOptParamScheduler, "Megatron's flag default")

        let samples = try ScheduleArguments(trainSamples: 1000, globalBatchSize: 8, lr: 1e-3, lrDecaySamples: 900,
                                            lrWarmupSamples: 50, weightDecayIncrStyle: .cosine)
            .with(startWD: 0, endWD: 0.1).configuration()
        XCTAssertEqual(samples.lrDecaySteps, 900)
        XCTAssertEqual(samples.lrWarmupSteps, 50)
        XCTAssertEqual(samples.wdIncrSteps, 1000)
        XCTAssertEqual(samples.endWD, 0.1)
    }

    func testBadSettingsAreRejectedByName() {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        let base = OptimizerParamScheduler.Configuration(maxLR: 1e-3, lrDecaySteps: 100, lrDecayStyle: .wsd,
                                                         startWD: 0.1, endWD: 0.1, wdIncrSteps: 100)
        XCTAssertTrue(message { _ = try OptimizerParamScheduler(base) }.contains("--lr-wsd-decay-iters"))
        var c = base
        c.lrDecayStyle = .cosine
        c.lrWarmupSteps = 100
        XCTAssertTrue(message { _ = try OptimizerParamScheduler(c) }.contains("warmup"))
        c.lrWarmupSteps = 0
        c.minLR = 1
        XCTAssertTrue(message { _ = try OptimizerParamScheduler(c) }.contains("--min-lr"))
        c.minLR = 0
        XCTAssertTrue(message { _ = try OptimizerParamScheduler(c, groups: [ParamGroupOverride(startWD: 0, endWD: 1)]) }
            .contains("constant"))
        c.overrideOptParamScheduler = true
        XCTAssertTrue(message { _ = try OptimizerParamScheduler(c) }.contains("--override-opt_param-scheduler"))
        XCTAssertTrue(message { _ = try ScheduleArguments(globalBatchSize: 8, lr: 1).configuration() }
            .contains("--train-iters"))
        XCTAssertTrue(message {
            _ = try ScheduleArguments(trainIters: 10, globalBatchSize: 8, lr: 1, lrWarmupIters: 2, lrWarmupFraction: 0.1)
                .configuration()
        }.contains("--lr-warmup-fraction"))
        XCTAssertTrue(message {
            _ = try ScheduleArguments(trainIters: 10, globalBatchSize: 8, lr: 1, weightDecayIncrStyle: .linear).configuration()
        }.contains("--start-weight-decay"))
    }

    func testLoggedLearningRateIsTheFirstDefaultGroup() throws {
        let c = OptimizerParamScheduler.Configuration(maxLR: 1e-3, lrDecaySteps: 100, lrDecayStyle: .constant,
                                                      startWD: 0.1, endWD: 0.1, wdIncrSteps: 100)
        let scheduler = try OptimizerParamScheduler(c, groups: [ParamGroupOverride(maxLR: 5e-3), ParamGroupOverride(wdMult: 0)])
        XCTAssertEqual(scheduler.loggedLearningRate, 1e-3)
        XCTAssertEqual(scheduler.learningRate(group: 0), 5e-3)
        XCTAssertEqual(scheduler.weightDecay(group: 1), 0)
    }

    private func check(_ scheduler: OptimizerParamScheduler, against row: Row, _ label: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(scheduler.numSteps, row.numSteps, label, file: file, line: line)
        for g in row.lr.indices {
            assertClose(scheduler.learningRate(group: g), row.lr[g], relative: 1e-12,
                        "\(label) lr of group \(g) at \(row.numSteps) samples", file: file, line: line)
            assertClose(scheduler.weightDecay(group: g), row.wd[g], relative: 1e-12,
                        "\(label) wd of group \(g) at \(row.numSteps) samples", file: file, line: line)
        }
    }

    private func decodeState(_ dict: [String: JSONScalar]) throws -> OptimizerParamScheduler.State {
        try JSONDecoder().decode(OptimizerParamScheduler.State.self, from: JSONEncoder().encode(dict))
    }
}

extension ScheduleArguments {
    func with(startWD: Double, endWD: Double) -> ScheduleArguments {
        var copy = self
        copy.startWeightDecay = startWD
        copy.endWeightDecay = endWD
        return copy
    }
}

/// A JSON scalar, to compare state dicts key by key (numbers compare by value: 12 == 12.0).
enum JSONScalar: Codable, Equatable {
    case number(Double), string(String), bool(Bool)

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else { self = .string(try c.decode(String.self)) }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .bool(let b): try c.encode(b)
        }
    }
}
