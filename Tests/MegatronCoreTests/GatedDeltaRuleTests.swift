import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// The gated delta rule (`Ops.gatedDeltaRule`, its backward) against fla's naive recurrence in PyTorch, which
/// matches Megatron's chunked torch kernel to 4e-7 (scripts/fixtures/make_gated_delta_net_golden.py): 70 steps
/// (past the GPU backward's 64-step chunks) and a value dim of 7 (a partial warp on the GPU).
final class GatedDeltaRuleTests: XCTestCase {
    func golden() throws -> [String: Tensor] {
        try SafeTensors.read(URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gated_delta_net/gated_delta_rule.safetensors")).tensors
    }

    func testForwardAndBackwardMatchPyTorch() throws {
        try check(on: .cpu, tolerance: 1e-5)
    }

    /// The CUDA kernels against the same numbers (one thread per state column, atomics over the columns).
    func testGPUKernelsMatchPyTorch() throws {
        try requireGPU()
        try check(on: .cuda(0), tolerance: 1e-4)
    }

    /// Megatron's head sizes (64 keys, 128 values: four warps of columns) over three of the backward's chunks,
    /// the GPU against the CPU.
    func testGPUKernelsMatchTheCPUAtModelSizes() throws {
        try requireGPU()
        let (b, t, h, dk, dv) = (1, 150, 2, 64, 128)
        let rng = PhiloxGenerator(seed: 3)
        func unit(_ x: Tensor) -> Tensor { x / (x * x).sum(dims: [3], keepDim: true).sqrt() }
        let operands = [unit(Tensor.normal([b, t, h, dk], generator: rng)), unit(Tensor.normal([b, t, h, dk], generator: rng)),
                        Tensor.normal([b, t, h, dv], generator: rng), Tensor.uniform([b, t, h], low: -0.5, high: 0, generator: rng),
                        Tensor.uniform([b, t, h], generator: rng), Tensor.normal([b, t, h, dv], generator: rng)]
        func run(_ x: [Tensor]) -> [Tensor] {
            let o = Ops.gatedDeltaRule(q: x[0], k: x[1], v: x[2], g: x[3], beta: x[4], scale: 0.125)
            let d = Ops.gatedDeltaRuleBackward(q: x[0], k: x[1], v: x[2], g: x[3], beta: x[4], scale: 0.125, gradOutput: x[5])
            return [o, d.q, d.k, d.v, d.g, d.beta]
        }
        let (cpu, gpu) = (run(operands), run(operands.map { $0.to(.cuda(0)) }))
        for (i, name) in ["o", "dq", "dk", "dv", "dg", "dbeta"].enumerated() {
            assertClose(gpu[i].to(.cpu), cpu[i], 1e-4, "\(name) GPU vs CPU")
        }
    }

    func requireGPU() throws {
        do {
            _ = try CUDAContext.shared(ordinal: 0)
        } catch {
            throw XCTSkip("no usable CUDA device here, GPU gated delta rule test skipped: \(error)")
        }
    }

    func check(on device: Device, tolerance: Float) throws {
        let golden = try golden()
        let g = golden.mapValues { $0.to(device) }
        let scale = 1 / Float(g["q"]!.size(3)).squareRoot()
        let o = Ops.gatedDeltaRule(q: g["q"]!, k: g["k"]!, v: g["v"]!, g: g["g"]!, beta: g["beta"]!, scale: scale)
        XCTAssertEqual(o.device, device)
        assertClose(o, golden["o"]!, tolerance, "o on \(device)")
        let d = Ops.gatedDeltaRuleBackward(q: g["q"]!, k: g["k"]!, v: g["v"]!, g: g["g"]!, beta: g["beta"]!, scale: scale,
                                           gradOutput: g["grad_output"]!)
        for (name, gradient) in [("q", d.q), ("k", d.k), ("v", d.v), ("g", d.g), ("beta", d.beta)] {
            XCTAssertEqual(gradient.device, device)
            assertClose(gradient, golden["grad_" + name]!, tolerance, "grad \(name) on \(device)")
        }
    }

    /// Max absolute difference within `tolerance` of the reference's largest magnitude.
    func assertClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        let (x, y) = (a.floats(), b.floats())
        let scale = max(y.map(abs).max() ?? 0, 1e-12)
        let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(what): max |diff| \(worst) vs scale \(scale)", file: file, line: line)
    }
}
