import XCTest
import MegatronAutograd
import MegatronTensor
import MegatronTestSupport
@testable import MegatronCore

/// `--moe-grouped-gemm`: the experts' FC1 and FC2 as grouped GEMMs give the same layer as running the experts
/// one after another (Megatron's SequentialMLP): on the CPU the same numbers exactly (output, input gradient,
/// every parameter's gradient, returned or added into fp32 main grads), on the GPU within bf16 rounding. The
/// token counts are uneven and some experts get no token.
final class GroupedExpertsTests: XCTestCase {
    struct Setup {
        var experts = 8, topk = 2, swiglu = true, shared: Int? = nil
        var batch = 2, sequence = 8
        var dtype = DType.float32
    }

    static func layer(_ setup: Setup, grouped: Bool) throws -> MoELayer {
        var moe = MoEConfig(numExperts: setup.experts, ffnHiddenSize: 12, layers: [true])
        moe.topk = setup.topk
        moe.loadBalancing = [.init(kind: .auxLoss, coefficient: 0.01)]
        moe.sharedExpertIntermediateSize = setup.shared
        let config = try TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, ffnHiddenSize: 12,
                                           gatedLinearUnit: setup.swiglu, activation: setup.swiglu ? .silu : .geluExact,
                                           addBiasLinear: false, paramsDType: setup.dtype, moe: moe)
        let layer = MoELayer(config: config, moe: moe, generator: PhiloxGenerator(seed: 3))
        layer.setMoEGroupedGemm(grouped)
        return layer
    }

    /// One forward and backward of `sum(out * upstream)`; with `mainGrads` every parameter first gets a zero fp32
    /// `.grad`, so the weight-gradient GEMMs add into it in place. Returns the output, x's gradient and the
    /// parameters' gradients by name.
    static func run(_ layer: MoELayer, _ setup: Setup, mainGrads: Bool) -> (out: [Float], gradX: [Float], grads: [String: [Float]]) {
        let shape = [setup.batch, setup.sequence, 16]
        var x = Tensor.normal(shape, dtype: setup.dtype, generator: PhiloxGenerator(seed: 7)).to(DevicePlacement.current)
        x.requiresGrad = true
        let upstream = Tensor.normal(shape, dtype: setup.dtype, generator: PhiloxGenerator(seed: 8)).to(DevicePlacement.current)
        if mainGrads {
            for (_, p) in layer.namedParameters() { p.grad = Tensor.zeros(p.shape, device: p.device) }
        }
        let out = layer(x)
        (out * upstream).sum().backward()
        _ = layer.router.takeTrackedLosses()
        let grads = Dictionary(uniqueKeysWithValues: layer.namedParameters().map { name, p in
            (name, p.grad?.floats() ?? [Float](repeating: 0, count: p.count))
        })
        return (out.detached().floats(), x.grad!.floats(), grads)
    }

    /// Experts whose FC1 got an all-zero gradient: those no token was routed to.
    static func idleExperts(_ grads: [String: [Float]]) -> Int {
        grads.filter { $0.key.hasSuffix("linear_fc1.weight") && $0.key.contains("local_experts") && $0.value.allSatisfy { $0 == 0 } }.count
    }

    func testGroupedEqualsSequentialExactlyOnCPU() throws {
        let setups = [Setup(), Setup(batch: 1, sequence: 3), Setup(topk: 3, swiglu: false, shared: 8), Setup(dtype: .bfloat16)]
        for setup in setups {
            for mainGrads in [false, true] {
                let label = "\(setup) mainGrads \(mainGrads)"
                let sequential = Self.run(try Self.layer(setup, grouped: false), setup, mainGrads: mainGrads)
                let grouped = Self.run(try Self.layer(setup, grouped: true), setup, mainGrads: mainGrads)
                XCTAssertEqual(grouped.out, sequential.out, "\(label): output")
                XCTAssertEqual(grouped.gradX, sequential.gradX, "\(label): input gradient")
                XCTAssertEqual(Set(grouped.grads.keys), Set(sequential.grads.keys))
                for (name, values) in sequential.grads { XCTAssertEqual(grouped.grads[name], values, "\(label): \(name)") }
                XCTAssertTrue(sequential.grads.values.contains { $0.contains { $0 != 0 } }, "\(label): gradients flow")
                if setup.sequence == 3 {
                    // 3 tokens x top-2 reach at most 6 of the 8 experts.
                    XCTAssertGreaterThanOrEqual(Self.idleExperts(grouped.grads), 2, "\(label): experts without tokens")
                }
            }
        }
    }

    func testGroupedEqualsSequentialOnGPUInBF16() throws {
        let gpu = try requireGPU("grouped MoE experts GPU test")
        for setup in [Setup(batch: 2, sequence: 64, dtype: .bfloat16), Setup(batch: 1, sequence: 3, dtype: .bfloat16),
                      Setup(experts: 16, topk: 6, shared: 8, batch: 2, sequence: 32, dtype: .bfloat16)] {
            for mainGrads in [false, true] {
                let label = "\(setup) mainGrads \(mainGrads)"
                let sequential = try onDevice(gpu) { Self.run(try Self.layer(setup, grouped: false), setup, mainGrads: mainGrads) }
                let grouped = try onDevice(gpu) { Self.run(try Self.layer(setup, grouped: true), setup, mainGrads: mainGrads) }
                assertScaledClose(grouped.out, sequential.out, tolerance: 1e-2, "\(label): output")
                assertScaledClose(grouped.gradX, sequential.gradX, tolerance: 1e-2, "\(label): input gradient")
                for (name, values) in sequential.grads {
                    assertScaledClose(try XCTUnwrap(grouped.grads[name]), values, tolerance: 1e-2, "\(label): \(name)")
                }
                if setup.sequence == 3 { XCTAssertGreaterThanOrEqual(Self.idleExperts(grouped.grads), 2, "\(label): idle experts") }
            }
        }
    }
}
