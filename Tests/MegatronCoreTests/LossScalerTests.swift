import Foundation
import MegatronCore
import XCTest

/// Grad scalers against Megatron's grad_scaler.py, and the inf/NaN check, unscale, grad norm and
/// clipping against torch and Megatron's clip_grad_norm (Fixtures/optim/scalers.json).
final class LossScalerTests: XCTestCase {
    struct Config: Decodable {
        var initialScale: Float, minScale: Float, growthFactor: Float, backoffFactor: Float
        var growthInterval: Int, hysteresis: Int
    }
    struct Row: Decodable { var scale: Float; var invScale: Float; var growthTracker: Int; var hysteresisTracker: Int }
    struct Dynamic: Decodable {
        var config: Config, foundInf: [Int], trajectory: [Row]
        var stateDict: SavedState
    }
    /// Megatron's scaler state dict (the decoder maps its snake-case keys to these names).
    struct SavedState: Decodable { var scale: Float; var growthTracker: Int; var hysteresisTracker: Int }
    struct Unscale: Decodable { var label: String; var poisonedIndex: [Int]?; var foundInf: Bool; var unscaled: [[Double]]? }
    struct Clip: Decodable {
        var maxNorm: Double, gradientFactor: Float, step: Int
        var totalNorm: Double, totalNormFloat64: Double, clipCoeff: Double, clipped: [[Double]]
    }
    struct Fixture: Decodable { var dynamic: [Dynamic]; var unscale: [Unscale]; var clip: [Clip] }

    /// Parameter sizes of the fixture problem (layer.weight, layer.bias, norm.weight, proj.weight).
    let sizes = [24, 6, 37, 15]

    func testDynamicScalerMatchesMegatron() throws {
        let fixture = try loadOptimFixture("scalers", as: Fixture.self)
        XCTAssertEqual(fixture.dynamic.count, 3)
        for (n, c) in fixture.dynamic.enumerated() {
            var scaler = try DynamicGradScaler(
                initialScale: c.config.initialScale, minScale: c.config.minScale, growthFactor: c.config.growthFactor,
                backoffFactor: c.config.backoffFactor, growthInterval: c.config.growthInterval, hysteresis: c.config.hysteresis)
            for (i, (found, row)) in zip(c.foundInf, c.trajectory).enumerated() {
                scaler.update(foundInf: found != 0)
                XCTAssertEqual(scaler.scale, row.scale, "case \(n) update \(i)")
                XCTAssertEqual(scaler.inverseScale, row.invScale, "case \(n) update \(i)")
                XCTAssertEqual(scaler.growthTracker, row.growthTracker, "case \(n) update \(i)")
                XCTAssertEqual(scaler.hysteresisTracker, row.hysteresisTracker, "case \(n) update \(i)")
            }
            let saved = c.stateDict
            XCTAssertEqual(scaler.state(), DynamicGradScaler.State(
                scale: saved.scale, growthTracker: saved.growthTracker, hysteresisTracker: saved.hysteresisTracker))
        }
    }

    func testMegatronDefaultsReachTheMinimumScale() throws {
        var scaler = try DynamicGradScaler()
        XCTAssertEqual(scaler.scale, 4_294_967_296)
        XCTAssertEqual(scaler.growthInterval, 1000)
        XCTAssertEqual(scaler.hysteresis, 2)
        scaler.update(foundInf: true)
        XCTAssertEqual(scaler.scale, 4_294_967_296, "hysteresis 2: the first inf does not back off")
        for _ in 0..<40 { scaler.update(foundInf: true) }
        XCTAssertEqual(scaler.scale, 1, "clamped at --min-loss-scale")
    }

    func testScalerStateRoundTripsThroughMegatronKeys() throws {
        var scaler = try DynamicGradScaler(initialScale: 1024, growthInterval: 3)
        for found in [false, true, false, false] { scaler.update(foundInf: found) }
        let json = try JSONEncoder().encode(scaler.state())
        let keys = try JSONSerialization.jsonObject(with: json) as! [String: Any]
        XCTAssertEqual(Set(keys.keys), ["scale", "growth_tracker", "hysteresis_tracker"])
        var restored = try DynamicGradScaler(initialScale: 1024, growthInterval: 3)
        try restored.load(try JSONDecoder().decode(DynamicGradScaler.State.self, from: json))
        XCTAssertEqual(restored, scaler)
        XCTAssertThrowsError(try restored.load(.init(scale: 0, growthTracker: 0, hysteresisTracker: 2)))
    }

    func testConstantScalerNeverMoves() throws {
        var scaler = try ConstantGradScaler(scale: 128)
        for found in [true, true, true, false] { scaler.update(foundInf: found) }
        XCTAssertEqual(scaler.scale, 128)
        XCTAssertEqual(scaler.inverseScale, 1.0 / 128)
        XCTAssertThrowsError(try ConstantGradScaler(scale: 0)) { XCTAssertTrue("\($0)".contains("--loss-scale"), "\($0)") }
        XCTAssertThrowsError(try DynamicGradScaler(hysteresis: 0)) { XCTAssertTrue("\($0)".contains("--hysteresis"), "\($0)") }
    }

    func testUnscaleAndNonFiniteCheckMatchTorch() throws {
        let fixture = try loadOptimFixture("scalers", as: Fixture.self)
        XCTAssertEqual(fixture.unscale.map(\.label), ["finite", "inf", "nan", "neg_inf"])
        let poisons: [String: Float] = ["inf": .infinity, "nan": .nan, "neg_inf": -.infinity]
        for c in fixture.unscale {
            var grads = sizes.enumerated().map { k, n in OptimizerFixtureProblem.gradient(k, count: n, step: 3).map { $0 * 1024 } }
            if let at = c.poisonedIndex { grads[at[0]][at[1]] = poisons[c.label]! }
            XCTAssertEqual(withBuffers(&grads) { NonFiniteGradients.containsNonFinite($0.map { UnsafeBufferPointer($0) }) },
                           c.foundInf, c.label)
            let found = withBuffers(&grads) { NonFiniteGradients.unscaleAndCheck($0, inverseScale: Float(1.0 / 1024)) }
            XCTAssertEqual(found, c.foundInf, c.label)
            for (k, expected) in (c.unscaled ?? []).enumerated() {
                assertClose(grads[k], expected, relative: 0, "unscaled gradient \(k)")
            }
        }
    }

    func testNonFiniteCheckFindsOneNaNInALargeBuffer() {
        var big = [[Float](repeating: 1, count: 200_001)]
        XCTAssertFalse(withBuffers(&big) { NonFiniteGradients.containsNonFinite($0.map { UnsafeBufferPointer($0) }) })
        big[0][200_000] = .nan
        XCTAssertTrue(withBuffers(&big) { NonFiniteGradients.containsNonFinite($0.map { UnsafeBufferPointer($0) }) })
    }

    func testGradNormAndClippingMatchMegatron() throws {
        let fixture = try loadOptimFixture("scalers", as: Fixture.self)
        XCTAssertTrue(fixture.clip.contains { $0.clipCoeff < 1 } && fixture.clip.contains { $0.clipCoeff >= 1 })
        for c in fixture.clip {
            var grads = sizes.enumerated().map { k, n in
                OptimizerFixtureProblem.gradient(k, count: n, step: c.step).map { $0 * c.gradientFactor }
            }
            let norm = withBuffers(&grads) { GradientNorm.globalL2Norm($0.map { UnsafeBufferPointer($0) }) }
            assertClose(norm, c.totalNormFloat64, relative: 1e-12, "exact global norm")
            assertClose(norm, c.totalNorm, relative: 1e-6, "Megatron's fp32 global norm")
            let coefficient = withBuffers(&grads) { GradientNorm.clip($0, maxNorm: c.maxNorm, totalNorm: norm) }
            assertClose(coefficient, c.clipCoeff, relative: 1e-6, "clip coefficient")
            for k in grads.indices { assertClose(grads[k], c.clipped[k], relative: 1e-6, "clipped gradient \(k)") }
        }
    }

    func testGlobalNormOfALargeBufferDoesNotDependOnThreads() {
        let n = 300_007
        var grads = [(0..<n).map { Float($0 % 13) - 6 }]
        var sum = 0.0
        for i in 0..<n {
            let v = Double(i % 13 - 6)
            sum += v * v
        }
        let expected = sum.squareRoot()
        let norm = withBuffers(&grads) { GradientNorm.globalL2Norm($0.map { UnsafeBufferPointer($0) }) }
        XCTAssertEqual(norm, expected)
    }

    private func withBuffers<R>(_ arrays: inout [[Float]], _ body: ([UnsafeMutableBufferPointer<Float>]) -> R) -> R {
        var flat = arrays.flatMap { $0 }
        let counts = arrays.map(\.count)
        let result = flat.withUnsafeMutableBufferPointer { all -> R in
            var offset = 0
            let buffers = counts.map { n -> UnsafeMutableBufferPointer<Float> in
                defer { offset += n }
                return UnsafeMutableBufferPointer(rebasing: all[offset..<offset + n])
            }
            return body(buffers)
        }
        var offset = 0
        arrays = counts.map { n in defer { offset += n }; return Array(flat[offset..<offset + n]) }
        return result
    }
}
