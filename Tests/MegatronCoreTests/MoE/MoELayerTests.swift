import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// The MoE layer against Megatron Core's own MoELayer (SequentialMLP experts) on CPU (Fixtures/moe/layer.json,
/// made by scripts/fixtures/make_moe_layer_fixtures.py): output, input gradient and every parameter's gradient
/// by Megatron's name, aux and z losses included through their auto-scaler.
final class MoELayerTests: XCTestCase {
    struct Case: Decodable {
        var name: String
        var experts: Int, topk: Int, ffn: Int
        var preSoftmax: Bool?
        var swiglu: Bool
        var auxCoeff: Float?, zCoeff: Float?
        var shared: Int?
        var seq: Int, batch: Int, hidden: Int
        var params: [String: [Float]]
        var x: [Float], upstream: [Float], output: [Float], gradX: [Float]
        var grads: [String: [Float]]
    }

    static func cases() throws -> [Case] { try loadMoEFixtureCases("layer", as: Case.self) }

    static func layer(_ fixture: Case) throws -> MoELayer {
        var moe = MoEConfig(numExperts: fixture.experts, ffnHiddenSize: fixture.ffn, layers: [true])
        moe.topk = fixture.topk
        moe.preSoftmax = fixture.preSoftmax ?? false
        if let coefficient = fixture.auxCoeff { moe.loadBalancing = [.init(kind: .auxLoss, coefficient: coefficient)] }
        moe.zLossCoefficient = fixture.zCoeff
        moe.sharedExpertIntermediateSize = fixture.shared
        let config = try TransformerConfig(numLayers: 1, hiddenSize: fixture.hidden, numAttentionHeads: 2, ffnHiddenSize: fixture.ffn,
                                           gatedLinearUnit: fixture.swiglu, activation: fixture.swiglu ? .silu : .geluExact,
                                           addBiasLinear: false, moe: moe)
        let layer = MoELayer(config: config, moe: moe, generator: PhiloxGenerator(seed: 3))
        let parameters = Dictionary(uniqueKeysWithValues: layer.namedParameters())
        XCTAssertEqual(Set(parameters.keys), Set(fixture.params.keys), "\(fixture.name): Megatron's parameter names")
        for (name, values) in fixture.params {
            let p = try XCTUnwrap(parameters[name])
            Ops.copy(Tensor(shape: p.shape, values: values), into: p)
        }
        return layer
    }

    func testLayerMatchesMegatron() throws {
        for fixture in try Self.cases() {
            let layer = try Self.layer(fixture)
            let (s, b, h) = (fixture.seq, fixture.batch, fixture.hidden)
            // Megatron's [s, b, h] is this model's [b, s, h] transposed.
            var x = Tensor(shape: [s, b, h], values: fixture.x).transposed(0, 1).madeContiguous()
            x.requiresGrad = true
            let out = layer(x)
            let upstream = Tensor(shape: [s, b, h], values: fixture.upstream).transposed(0, 1).madeContiguous()
            (out * upstream).sum().backward()
            let name = fixture.name
            assertMoEClose(out.detached().transposed(0, 1).madeContiguous().floats(), fixture.output, 1e-5, "\(name): output")
            assertMoEClose(try XCTUnwrap(x.grad).transposed(0, 1).madeContiguous().floats(), fixture.gradX, 1e-5, "\(name): grad x")
            for (parameter, tensor) in layer.namedParameters() {
                let expected = try XCTUnwrap(fixture.grads[parameter])
                let actual = tensor.grad?.floats() ?? Array(repeating: 0, count: tensor.count)
                assertMoEClose(actual, expected, 1e-5, "\(name): grad \(parameter)")
            }
        }
    }

    /// Finite differences of the loss `sum(out * upstream) + aux + z` in an expert weight and the gate.
    func testGradientsMatchFiniteDifferences() throws {
        let fixture = try XCTUnwrap(Self.cases().first)
        let layer = try Self.layer(fixture)
        let (s, b, h) = (fixture.seq, fixture.batch, fixture.hidden)
        let x = Tensor(shape: [s, b, h], values: fixture.x).transposed(0, 1).madeContiguous()
        let upstream = Tensor(shape: [s, b, h], values: fixture.upstream).transposed(0, 1).madeContiguous()
        func objective() -> Tensor {
            let out = (layer(x) * upstream).sum()
            let auxiliary = layer.router.takeTrackedLosses()
            // The tracked values are loss / coefficient; the objective adds the losses themselves.
            return out + (auxiliary["load_balancing_loss"]! * fixture.auxCoeff!) + (auxiliary["z_loss"]! * fixture.zCoeff!)
        }
        objective().backward()
        for (module, index) in [(layer.experts.localExperts[1].linearFC1.weight, 5), (layer.router.weight, 3)] {
            let analytic = try XCTUnwrap(module.grad).floats()[index]
            var values = module.detached().floats()
            let eps: Float = 1e-3
            values[index] += eps
            Ops.copy(Tensor(shape: module.shape, values: values), into: module)
            let plus = objective().item()
            values[index] -= 2 * eps
            Ops.copy(Tensor(shape: module.shape, values: values), into: module)
            let minus = objective().item()
            XCTAssertEqual(analytic, (plus - minus) / (2 * eps), accuracy: 2e-3 * max(1, abs(analytic)))
        }
    }
}
