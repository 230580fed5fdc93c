import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// The router against Megatron Core's own `TopKRouter` on CPU (Fixtures/moe/router.json, made by
/// scripts/fixtures/make_moe_router_fixtures.py): probabilities, routing map, logged aux / z losses, the
/// gradients of `sum(probs * upstream) + aux losses` and the expert-bias update.
final class TopKRouterTests: XCTestCase {
    struct Case: Decodable {
        var name: String
        var topk: Int
        var score: String?
        var preSoftmax: Bool?
        var numGroups: Int?
        var groupTopk: Int?
        var scaling: Float?
        var loadBalancing: String
        var auxCoeff: Float?
        var zCoeff: Float?
        var expertBias: [Float]?
        var capacity: Double?
        var dropPolicy: String?
        var pad: Bool?
        var seq: Int, batch: Int, hidden: Int, experts: Int
        var x: [Float], weight: [Float], upstream: [Float]
        var probs: [Float], routingMap: [Int]
        var losses: [String: Float]
        var gradX: [Float], gradWeight: [Float]
        var tokensPerExpert: [Float]?
        var updatedExpertBias: [Float]?

        var moe: MoEConfig {
            var moe = MoEConfig(numExperts: experts, ffnHiddenSize: 8, layers: [true])
            moe.topk = topk
            moe.scoreFunction = MoEConfig.ScoreFunction(rawValue: score ?? "softmax")!
            moe.preSoftmax = preSoftmax ?? false
            (moe.numGroups, moe.groupTopk, moe.topkScalingFactor) = (numGroups, groupTopk, scaling)
            if let kind = MoEConfig.LoadBalancingLoss.Kind(rawValue: loadBalancing), let auxCoeff {
                moe.loadBalancing = [.init(kind: kind, coefficient: auxCoeff)]
            }
            moe.zLossCoefficient = zCoeff
            moe.expertBias = expertBias != nil
            moe.capacityFactor = capacity
            moe.dropPolicy = MoEConfig.DropPolicy(rawValue: dropPolicy ?? "probs")!
            moe.padToCapacity = pad ?? false
            return moe
        }
    }

    static func cases() throws -> [Case] { try loadMoEFixtureCases("router", as: Case.self) }

    func testRouterMatchesMegatron() throws {
        for fixture in try Self.cases() {
            let config = try TransformerConfig(numLayers: 1, hiddenSize: fixture.hidden, numAttentionHeads: 2, ffnHiddenSize: 8)
            let router = TopKRouter(config: config, moe: fixture.moe, generator: PhiloxGenerator(seed: 1))
            Ops.copy(Tensor(shape: [fixture.experts, fixture.hidden], values: fixture.weight), into: router.weight)
            if let bias = fixture.expertBias { router.loadExpertBias(Tensor(shape: [fixture.experts], values: bias)) }
            // Megatron's x is [s, b, h]; its tokens are that order flattened.
            var x = Tensor(shape: [fixture.seq * fixture.batch, fixture.hidden], values: fixture.x)
            x.requiresGrad = true
            let routed = router(x, batch: fixture.batch)
            let upstream = Tensor(shape: [fixture.seq * fixture.batch, fixture.experts], values: fixture.upstream)
            (routed.probs * upstream).sum().backward()
            let name = fixture.name
            if fixture.dropPolicy == "position" {
                // Which of equal 0/1 entries torch.topk(sorted=False) keeps is its implementation's (it differs
                // between CPU and CUDA); ours keeps the earliest tokens. Every expert still takes its capacity.
                XCTAssertEqual(columnSums(routed.routingMap.floats().map { Int($0) }, fixture.experts),
                               columnSums(fixture.routingMap, fixture.experts), "\(name): tokens per expert")
                continue
            }
            XCTAssertEqual(routed.routingMap.floats().map { Int($0) }, fixture.routingMap, "\(name): routing map")
            assertMoEClose(routed.probs.floats(), fixture.probs, 2e-6, "\(name): probs")
            let losses = router.takeTrackedLosses().mapValues { $0.item() }
            XCTAssertEqual(Set(losses.keys), Set(fixture.losses.keys), "\(name): logged losses")
            for (key, value) in fixture.losses {
                XCTAssertEqual(losses[key] ?? .nan, value, accuracy: 2e-6 * max(1, abs(value)), "\(name): \(key)")
            }
            assertMoEClose(try XCTUnwrap(x.grad).floats(), fixture.gradX, 1e-5, "\(name): grad x")
            assertMoEClose(try XCTUnwrap(router.weight.grad).floats(), fixture.gradWeight, 1e-5, "\(name): grad weight")
            if let counts = fixture.tokensPerExpert, let updated = fixture.updatedExpertBias {
                let routedCounts = try XCTUnwrap(router.tokensPerExpert)
                XCTAssertEqual(routedCounts.floats(), counts, "\(name): tokens per expert")
                router.updateExpertBias(counts: routedCounts)
                assertMoEClose(try XCTUnwrap(router.expertBias).floats(), updated, 1e-7, "\(name): updated bias")
            }
        }
    }

    /// The fixture cases do route differently: a capacity drops tokens, padding fills every expert.
    func testFixturesCoverDroppingAndPadding() throws {
        let cases = Dictionary(uniqueKeysWithValues: try Self.cases().map { ($0.name, $0) })
        let dropped = try XCTUnwrap(cases["capacity_probs"])
        XCTAssertLessThan(dropped.routingMap.reduce(0, +), dropped.seq * dropped.batch * dropped.topk)
        let padded = try XCTUnwrap(cases["capacity_position_padded"])
        XCTAssertEqual(padded.routingMap.reduce(0, +), padded.experts * 2)
    }

    private func columnSums(_ map: [Int], _ width: Int) -> [Int] {
        (0..<width).map { column in stride(from: column, to: map.count, by: width).reduce(0) { $0 + map[$1] } }
    }
}
