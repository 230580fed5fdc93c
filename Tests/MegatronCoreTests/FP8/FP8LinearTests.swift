import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// FP8 linear layers on the CPU: the GEMMs of forward, dgrad and wgrad are the products of the quantized
/// operands Transformer Engine would form (e4m3 input and weight, e5m2 gradient under hybrid), the scaling
/// state follows the recipe, amaxes are reduced over the amax group, and the state survives a checkpoint.
final class FP8LinearTests: XCTestCase {
    private func tensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        Tensor.normal(shape, std: scale, generator: PhiloxGenerator(seed: seed))
    }

    /// Tensorwise scaling: each operand scaled by fp8 max / its own amax, so the reference is computable here.
    private func reference(_ x: Tensor, _ dtype: DType) -> Tensor {
        let scale = FP8ScaleMath.currentScale(amax: Ops.absMax(x).item(), fp8Max: FloatFormats.largestFinite(dtype)).scale
        return FP8Tensor.quantize(x, to: dtype, scale: Tensor(scalar: scale)).dequantized()
    }

    func testForwardAndGradientsAreTheQuantizedProducts() {
        var recipe = FP8Recipe(format: .hybrid)
        recipe.scaling = .tensorwise
        let scaling = FP8LinearScaling(recipe: recipe, amaxGroup: nil)
        var x = tensor([2, 3, 32], seed: 1), w = tensor([16, 32], seed: 2, scale: 0.05), b = tensor([16], seed: 3)
        (x.requiresGrad, w.requiresGrad, b.requiresGrad) = (true, true, true)
        let y = Functional.fp8Linear(x, weight: w, bias: b, quantizer: scaling)
        let g = tensor([2, 3, 16], seed: 4, scale: 1e-3)
        y.backward(gradient: g)

        let (qx, qw) = (reference(x.detached().reshaped([6, 32]), .float8E4M3), reference(w.detached(), .float8E4M3))
        let qg = reference(g.reshaped([6, 16]), .float8E5M2)
        XCTAssertEqual(y.shape, [2, 3, 16])
        XCTAssertEqual(y.floats(), Ops.binary(Ops.matmul(qx, qw.transposed(0, 1)), b, .add).floats())
        XCTAssertEqual(x.grad!.floats(), Ops.matmul(qg, qw).floats())
        XCTAssertEqual(w.grad!.floats(), Ops.matmul(qg.transposed(0, 1), qx).floats())
        XCTAssertEqual(b.grad!.floats(), Ops.reduce(g.reshaped([6, 16]), dims: [0], .sum).floats())
        // e5m2 gradients are not e4m3 ones: the format matters.
        XCTAssertNotEqual(x.grad!.floats(), Ops.matmul(reference(g.reshaped([6, 16]), .float8E4M3), qw).floats())
        // And the layer stays close to the high-precision one.
        let exact = Ops.linear(x.detached(), weight: w.detached(), bias: b.detached())
        XCTAssertLessThan(Ops.absMax(Ops.binary(y, exact, .sub)).item(), 0.1 * Ops.absMax(exact).item())
    }

    /// The MLP's linear_fc2 with SwiGLU: x holds [gate, up] halves, twice the weight's input width; the layer's
    /// input is silu(gate) · up, quantized, and x's gradient goes back through the activation.
    func testGatedActivationHalvesTheInput() {
        var recipe = FP8Recipe(format: .hybrid)
        recipe.scaling = .tensorwise
        var x = tensor([2, 3, 64], seed: 11), w = tensor([16, 32], seed: 12, scale: 0.05)
        (x.requiresGrad, w.requiresGrad) = (true, true)
        let y = Functional.fp8Linear(x, activation: .swiglu, weight: w, bias: nil, quantizer: FP8LinearScaling(recipe: recipe, amaxGroup: nil))
        let g = tensor([2, 3, 16], seed: 13, scale: 1e-3)
        y.backward(gradient: g)

        let xs = x.detached().reshaped([6, 64])
        let h = RecomputedActivation.swiglu.forward(xs)
        let (qh, qw, qg) = (reference(h, .float8E4M3), reference(w.detached(), .float8E4M3), reference(g.reshaped([6, 16]), .float8E5M2))
        XCTAssertEqual(y.shape, [2, 3, 16])
        XCTAssertEqual(y.floats(), Ops.matmul(qh, qw.transposed(0, 1)).floats())
        XCTAssertEqual(x.grad!.shape, [2, 3, 64])
        XCTAssertEqual(x.grad!.floats(), RecomputedActivation.swiglu.backward(xs, gradOutput: Ops.matmul(qg, qw)).floats())
        XCTAssertEqual(w.grad!.floats(), Ops.matmul(qg.transposed(0, 1), qh).floats())
    }

    /// `--no-fp8-wgrad`: the weight gradient from the high-precision input and gradient.
    func testWeightGradientInHighPrecision() {
        var recipe = FP8Recipe(format: .e4m3)
        (recipe.scaling, recipe.fp8WeightGradient) = (.tensorwise, false)
        var x = tensor([4, 32], seed: 5), w = tensor([8, 32], seed: 6)
        (x.requiresGrad, w.requiresGrad) = (true, true)
        let g = tensor([4, 8], seed: 7)
        Functional.fp8Linear(x, weight: w, bias: nil, quantizer: FP8LinearScaling(recipe: recipe, amaxGroup: nil)).backward(gradient: g)
        let expected = Ops.matmul(g.transposed(0, 1), x.detached()).floats()
        for (got, want) in zip(w.grad!.floats(), expected) { XCTAssertEqual(got, want, accuracy: 1e-5) }
        XCTAssertEqual(x.grad!.floats(), Ops.matmul(reference(g, .float8E4M3), reference(w.detached(), .float8E4M3)).floats())
    }

    /// Delayed scaling casts step t with the amax of step t - 1 (history length 1, most_recent): scale 1 first,
    /// then 448 / the previous input's amax.
    func testDelayedScalingUsesThePreviousAmax() {
        let state = FP8TensorScaling(dtype: .float8E4M3, recipe: FP8Recipe(format: .hybrid), amaxGroup: nil)
        let inputs = [tensor([64], seed: 8, scale: 3), tensor([64], seed: 9, scale: 0.01), tensor([64], seed: 10, scale: 50)]
        var expectedScale: Float = 1
        for x in inputs {
            let q = state.quantize(x)
            XCTAssertEqual(state.scale.item(), expectedScale)
            XCTAssertEqual(q.scaleInverse.item(), 1 / expectedScale)
            XCTAssertEqual(q.data.floats(), Ops.scaledCast(x, to: .float8E4M3, scale: Tensor(scalar: expectedScale), saturate: true).floats())
            expectedScale = 448 / Ops.absMax(x).item()
        }
        // A cast keeps its own scale inverse: later updates make new tensors.
        let first = state.quantize(inputs[0])
        _ = state.quantize(inputs[1])
        XCTAssertEqual(first.scaleInverse.item(), Ops.absMax(inputs[2]).item() / 448, accuracy: 1e-6 * Ops.absMax(inputs[2]).item())
    }

    /// Amaxes are reduced (max) over the amax group before the update: every rank scales by the largest.
    func testAmaxIsReducedOverTheGroup() throws {
        let scales = try ThreadCommunicator.run(worldSize: 2) { communicator -> Float in
            let state = FP8TensorScaling(dtype: .float8E4M3, recipe: FP8Recipe(format: .e4m3), amaxGroup: communicator)
            _ = state.quantize(Tensor(shape: [2], values: communicator.rank == 0 ? [1, -2] : [7, 0.5]))
            _ = state.quantize(Tensor(shape: [1], values: [0]))
            return state.scale.item()
        }
        XCTAssertEqual(scales, [64, 64])   // 448 / 7 on both ranks
    }

    /// A saved and restored state scales the next casts as the original does.
    func testScalingStateRoundTrip() throws {
        var recipe = FP8Recipe(format: .hybrid)
        (recipe.amaxHistoryLength, recipe.amaxComputeAlgo, recipe.margin) = (4, .max, 1)
        let original = FP8TensorScaling(dtype: .float8E5M2, recipe: recipe, amaxGroup: nil)
        for seed in 11..<14 { _ = original.quantize(tensor([32], seed: UInt64(seed), scale: Float(seed))) }
        let saved = original.savedState()
        XCTAssertEqual(saved.amaxHistory.count, 4)
        let restored = FP8TensorScaling(dtype: .float8E5M2, recipe: recipe, amaxGroup: nil)
        try restored.restore(saved)
        for seed in 20..<23 {
            let x = tensor([32], seed: UInt64(seed), scale: 0.5)
            XCTAssertEqual(restored.quantize(x).data.floats(), original.quantize(x).data.floats())
            XCTAssertEqual(restored.scale.item(), original.scale.item())
        }
        var shorter = recipe
        shorter.amaxHistoryLength = 2
        XCTAssertThrowsError(try FP8TensorScaling(dtype: .float8E5M2, recipe: shorter, amaxGroup: nil).restore(saved))
    }

    /// The four linear layers of each layer run in FP8, but not those of the layers kept in high precision.
    func testModelLayersFollowTheRecipe() throws {
        let config = try TransformerConfig(numLayers: 3, hiddenSize: 32, numAttentionHeads: 4, ffnHiddenSize: 64,
                                           hiddenDropout: 0, attentionDropout: 0)
        let model = GPTModel(config: config, vocabSize: 64, maxSequenceLength: 16, seed: 3)
        var recipe = FP8Recipe(format: .hybrid)
        (recipe.scaling, recipe.highPrecisionLayersAtStart, recipe.highPrecisionLayersAtEnd) = (.tensorwise, 1, 1)
        model.enableFP8(recipe, amaxGroup: nil)
        XCTAssertEqual(model.fp8Layers.map(\.0), ["decoder.layers.1.self_attention.linear_qkv", "decoder.layers.1.self_attention.linear_proj",
                                                  "decoder.layers.1.mlp.linear_fc1", "decoder.layers.1.mlp.linear_fc2"])
        XCTAssertTrue(model.fp8ScalingStates().isEmpty, "tensorwise scaling keeps no state")
    }
}
