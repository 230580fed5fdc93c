import MegatronCore
import XCTest

/// SGD, Adam and AdamW against torch.optim (single-tensor path) over 20 steps of the fixture problem,
/// with lr and weight decay from the scheduler each step, as Megatron's training loop sets them.
/// Tolerance: 1e-6 relative plus 1e-7 absolute (about one fp32 ulp at 1), since torch's CPU kernels
/// fuse multiply-adds and ours do not; an element that cancels to near zero keeps that one-ulp error.
final class OptimizerRuleTests: XCTestCase {
    struct Fixture: Decodable {
        struct Parameter: Decodable { var name: String; var shape: [Int] }
        struct Case: Decodable {
            var name: String, kind: String, maxLr: Double
            var momentum: Double?, dampening: Double?, nesterov: Bool?
            var beta1: Double?, beta2: Double?, eps: Double?
            var lr: [Double]
            var weightDecay: [[Double]]
            var params: [String: [[Double]]]
        }
        var parameters: [Parameter]
        var steps: Int
        var globalBatchSize: Int
        var cases: [Case]
    }

    func testRulesMatchTorchOptimOverTwentySteps() throws {
        let fixture = try loadOptimFixture("optimizers", as: Fixture.self)
        XCTAssertEqual(Set(fixture.cases.map(\.name)), ["sgd", "sgd_momentum", "sgd_nesterov", "adam", "adamw"])
        var worst = (relative: 0.0, absolute: 0.0)
        for c in fixture.cases {
            let w = try run(c, fixture)
            worst = (max(worst.relative, w.relative), max(worst.absolute, w.absolute))
        }
        print("OptimizerRuleTests: largest difference from torch over all cases and steps: "
              + "relative \(worst.relative), absolute \(worst.absolute)")
    }

    /// Runs one case; returns the largest relative and absolute differences from torch.
    private func run(_ c: Fixture.Case, _ fixture: Fixture) throws -> (relative: Double, absolute: Double) {
        let rule = try makeRule(c)
        let descriptors = fixture.parameters.map { ParamDescriptor(name: $0.name, shape: $0.shape) }
        let groups = try ParamGroupRule().groups(descriptors)
        XCTAssertEqual(groups.map(\.parameterIndices), [[0, 3], [1, 2]], "Megatron's default grouping")
        let arguments = ScheduleArguments(
            trainIters: fixture.steps, globalBatchSize: fixture.globalBatchSize, lr: c.maxLr, minLR: c.maxLr * 0.1,
            lrWarmupInit: c.maxLr * 0.05, lrDecayStyle: .cosine, lrDecayIters: 16, lrWarmupIters: 3,
            startWeightDecay: 0.05, endWeightDecay: 0.1, weightDecayIncrStyle: .linear)
        var scheduler = try OptimizerParamScheduler(try arguments.configuration(), groups: groups.map(\.override))

        var params = fixture.parameters.enumerated().map { k, p in
            (0..<p.shape.reduce(1, *)).map { OptimizerFixtureProblem.initialValue(k, $0) }
        }
        var states = params.map { p in (0..<rule.stateCount).map { _ in [Float](repeating: 0, count: p.count) } }
        let groupOf = Dictionary(uniqueKeysWithValues: groups.enumerated().flatMap { g, spec in
            spec.parameterIndices.map { ($0, g) } })
        var worst = (relative: 0.0, absolute: 0.0)
        for step in 1...fixture.steps {
            assertClose(scheduler.learningRate(group: 0), c.lr[step - 1], relative: 1e-12, "\(c.name) lr at step \(step)")
            for g in 0..<2 {
                assertClose(scheduler.weightDecay(group: g), c.weightDecay[step - 1][g], relative: 1e-12,
                            "\(c.name) weight decay of group \(g) at step \(step)")
            }
            for k in params.indices {
                let g = groupOf[k]!
                let grad = OptimizerFixtureProblem.gradient(k, count: params[k].count, step: step)
                apply(rule, &params[k], grad, &states[k], step: step,
                      lr: scheduler.learningRate(group: g), weightDecay: scheduler.weightDecay(group: g))
            }
            scheduler.step(fixture.globalBatchSize)
            if let expected = c.params[String(step)] {
                for k in params.indices {
                    let w = assertClose(params[k], expected[k], relative: 1e-6, absolute: 1e-7,
                                        "\(c.name) \(fixture.parameters[k].name) after step \(step)")
                    worst = (max(worst.relative, w.relative), max(worst.absolute, w.absolute))
                }
            }
        }
        return worst
    }

    private func makeRule(_ c: Fixture.Case) throws -> any DoubleUpdateRule {
        switch c.kind {
        case "sgd": return try SGDRule(momentum: c.momentum!, dampening: c.dampening!, nesterov: c.nesterov!)
        case "adam": return try AdamRule.adam(beta1: c.beta1!, beta2: c.beta2!, eps: c.eps!)
        case "adamw": return try AdamRule.adamW(beta1: c.beta1!, beta2: c.beta2!, eps: c.eps!)
        default: throw XCTSkip("unknown optimizer kind \(c.kind) in the fixture")
        }
    }

    func testThreadedUpdateMatchesPiecewiseUpdate() throws {
        // Spread over threads and SIMD lanes (and zero-padded tails), every element must get exactly the
        // update it gets when the buffer is handed over in small ragged pieces.
        let n = 70_001
        let rules: [any DoubleUpdateRule] = [try AdamRule.adamW(beta2: 0.95), try AdamRule.adam(),
                                             try SGDRule(momentum: 0.9, nesterov: true)]
        for rule in rules {
            var whole = (0..<n).map { Float($0 % 97) / 50 - 1 }
            var pieces = whole
            var wholeState = (0..<rule.stateCount).map { _ in [Float](repeating: 0.25, count: n) }
            var piecesState = wholeState
            for step in 1...3 {
                let grad = (0..<n).map { Float(($0 * 31 + step) % 101) / 100 - 0.5 }
                apply(rule, &whole, grad, &wholeState, step: step, lr: 1e-2, weightDecay: 0.1)
                applyInPieces(rule, &pieces, grad, &piecesState, step: step)
            }
            XCTAssertEqual(whole, pieces, "\(type(of: rule))")
            XCTAssertEqual(wholeState, piecesState, "\(type(of: rule)) state")
        }
    }

    /// Updates `param` in pieces of 1, 2, ..., 17 elements, one rule call per piece.
    private func applyInPieces(_ rule: any DoubleUpdateRule, _ param: inout [Float], _ grad: [Float],
                               _ state: inout [[Float]], step: Int) {
        var flat = state.flatMap { $0 }
        let n = param.count
        param.withUnsafeMutableBufferPointer { p in
            grad.withUnsafeBufferPointer { g in
                flat.withUnsafeMutableBufferPointer { s in
                    var lo = 0, size = 1
                    while lo < n {
                        let r = lo..<min(n, lo + size)
                        let states = (0..<state.count).map {
                            UnsafeMutableBufferPointer(rebasing: s[($0 * n + r.lowerBound)..<($0 * n + r.upperBound)])
                        }
                        rule.update(param: UnsafeMutableBufferPointer(rebasing: p[r]), grad: UnsafeBufferPointer(rebasing: g[r]),
                                    state: states, step: step, lr: 1e-2, weightDecay: 0.1)
                        lo = r.upperBound
                        size = size % 17 + 1
                    }
                }
            }
        }
        state = (0..<state.count).map { Array(flat[$0 * n..<($0 + 1) * n]) }
    }

    func testRulesServeTheOptimizerProtocol() throws {
        // Float entry point of UpdateRule (what MixedPrecisionOptimizer calls) agrees with the Double one.
        let rule: UpdateRule = try AdamRule.adamW()
        XCTAssertEqual(rule.stateCount, 2)
        var a: [Float] = [1, -2, 3], b = a
        var m: [Float] = [0, 0, 0], v: [Float] = [0, 0, 0]
        var sb: [[Float]] = [m, v]
        a.withUnsafeMutableBufferPointer { p in
            [Float](arrayLiteral: 0.5, 0.25, -1).withUnsafeBufferPointer { g in
                m.withUnsafeMutableBufferPointer { mb in
                    v.withUnsafeMutableBufferPointer { vb in
                        rule.update(param: p, grad: g, state: [mb, vb], step: 1, lr: 0.5, weightDecay: 0.25)
                    }
                }
            }
        }
        apply(try AdamRule.adamW(), &b, [0.5, 0.25, -1], &sb, step: 1, lr: 0.5, weightDecay: 0.25)
        XCTAssertEqual(a, b)
        XCTAssertEqual([m, v], sb)
        XCTAssertEqual(try SGDRule().stateCount, 0)
        XCTAssertEqual(try SGDRule(momentum: 0.9).stateCount, 1)
    }

    func testInvalidHyperparametersAreRejectedByName() {
        XCTAssertThrowsError(try SGDRule(momentum: 0.9, dampening: 0.1, nesterov: true)) {
            XCTAssertTrue("\($0)".contains("Nesterov"), "\($0)")
        }
        XCTAssertThrowsError(try SGDRule(momentum: 0, nesterov: true))
        XCTAssertThrowsError(try AdamRule.adamW(beta2: 1)) { XCTAssertTrue("\($0)".contains("--adam-beta2"), "\($0)") }
        XCTAssertThrowsError(try AdamRule.adam(eps: -1)) { XCTAssertTrue("\($0)".contains("--adam-eps"), "\($0)") }
    }
}

/// The Double-scalar entry point both rules offer, so tests can hold either.
protocol DoubleUpdateRule {
    var stateCount: Int { get }
    func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Double, weightDecay: Double)
}

extension SGDRule: DoubleUpdateRule {}
extension AdamRule: DoubleUpdateRule {}

/// Runs `rule` on Swift arrays.
func apply(_ rule: any DoubleUpdateRule, _ param: inout [Float], _ grad: [Float], _ state: inout [[Float]],
           step: Int, lr: Double, weightDecay: Double) {
    var flat = state.flatMap { $0 }
    let n = param.count
    param.withUnsafeMutableBufferPointer { p in
        grad.withUnsafeBufferPointer { g in
            flat.withUnsafeMutableBufferPointer { s in
                let buffers = (0..<state.count).map { UnsafeMutableBufferPointer(rebasing: s[$0 * n..<($0 + 1) * n]) }
                rule.update(param: p, grad: g, state: buffers, step: step, lr: lr, weightDecay: weightDecay)
            }
        }
    }
    state = (0..<state.count).map { Array(flat[$0 * n..<($0 + 1) * n]) }
}
