import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

/// The fused rotary kernel (rope.cu) against the CPU loop: forward and backward in fp32, bf16 and
/// fp16, on strided views of a fused QKV tensor, on the vectorized path (head dims 64 and 128,
/// full and half rotary dims) and the element-wise one (head dim 12), with shared and per-row tables.
final class RotaryEmbeddingGPUTests: XCTestCase {
    func checkParity(dtype: DType, headDim d: Int, rotaryPercent: Float, perRow: Bool, file: StaticString = #filePath,
                     line: UInt = #line) throws {
        let device = try requireGPU("fused rotary GPU tests")
        let (b, s, g, p) = (2, 37, 2, 3)
        let label = "\(dtype) d\(d) rotary \(rotaryPercent)\(perRow ? " per-row" : "")"
        let rope = RotaryEmbedding(kvChannels: d, rotaryPercent: rotaryPercent, base: 10000)
        let tables = perRow ? rope.tables(positions: (0..<b).flatMap { Array($0 * 5..<$0 * 5 + s) })
            : rope.tables(positions: Array(3..<3 + s))
        let tableShape = perRow ? [b, s, rope.rotaryDim] : [s, rope.rotaryDim]
        let (cos, sin) = (tables.cos.reshaped(tableShape).cast(to: dtype), tables.sin.reshaped(tableShape).cast(to: dtype))
        let qkv = Tensor.normal([b, s, g, p + 2, d], dtype: dtype, generator: PhiloxGenerator(seed: 11))
        let gradient = Tensor.normal([b, g, p, s, d], dtype: dtype, generator: PhiloxGenerator(seed: 12))
        // q as the attention slices it, on both devices; the gradient as a strided view too.
        func q(_ t: Tensor) -> Tensor { t.permuted([0, 2, 3, 1, 4]).narrowed(2, start: 0, length: p) }
        let gradView = gradient.to(device).permuted([0, 1, 3, 2, 4]).madeContiguous().permuted([0, 1, 3, 2, 4])
        let forward = (gpu: Ops.rotaryEmbedding(q(qkv.to(device)), cos: cos.to(device), sin: sin.to(device)),
                       cpu: Ops.rotaryEmbedding(q(qkv), cos: cos, sin: sin))
        let backward = (gpu: Ops.rotaryEmbedding(gradView, cos: cos.to(device), sin: sin.to(device), backward: true),
                        cpu: Ops.rotaryEmbedding(gradient, cos: cos, sin: sin, backward: true))
        for (name, pair) in [("forward", forward), ("backward", backward)] {
            XCTAssertEqual(pair.gpu.device, device)
            XCTAssertEqual(pair.gpu.shape, [b, g, p, s, d])
            XCTAssertEqual(pair.gpu.dtype, dtype)
            assertParity(pair.gpu, pair.cpu, "\(label) \(name)", file: file, line: line)
        }
    }

    func testFloat32ForwardAndBackwardMatchTheCPU() throws {
        for (d, percent) in [(64, Float(1)), (64, 0.5), (128, 1), (12, 0.5)] {
            try checkParity(dtype: .float32, headDim: d, rotaryPercent: percent, perRow: false)
        }
    }

    func testBFloat16ForwardAndBackwardMatchTheCPU() throws {
        for (d, percent) in [(64, Float(1)), (64, 0.5), (128, 1), (12, 0.5)] {
            try checkParity(dtype: .bfloat16, headDim: d, rotaryPercent: percent, perRow: false)
        }
    }

    func testFloat16ForwardAndBackwardMatchTheCPU() throws {
        try checkParity(dtype: .float16, headDim: 64, rotaryPercent: 1, perRow: false)
    }

    func testPerRowTablesMatchTheCPU() throws {
        try checkParity(dtype: .bfloat16, headDim: 64, rotaryPercent: 1, perRow: true)
        try checkParity(dtype: .float32, headDim: 12, rotaryPercent: 0.5, perRow: true)
    }

    /// The module path end to end: SelfAttention-style q through `RotaryEmbedding` with autograd,
    /// GPU gradients of the fused QKV tensor equal the CPU's.
    func testAutogradThroughTheModuleMatchesTheCPU() throws {
        let device = try requireGPU("fused rotary GPU tests")
        let rope = RotaryEmbedding(kvChannels: 64, rotaryPercent: 1, base: 10000)
        let weights = Tensor.normal([2, 2, 3, 33, 64], generator: PhiloxGenerator(seed: 21)).cast(to: .bfloat16)
        func run(on target: Device) -> (Tensor, Tensor) {
            var qkv = Tensor.normal([2, 33, 2, 5, 64], dtype: .bfloat16, generator: PhiloxGenerator(seed: 22)).to(target)
            qkv.requiresGrad = true
            let q = qkv.permute([0, 2, 3, 1, 4]).narrow(2, start: 0, length: 3)
            let out = rope(q, offset: 4)
            (out * weights.to(target)).sum().backward()
            return (out, qkv.grad!)
        }
        let (gpu, cpu) = (run(on: device), run(on: .cpu))
        assertParity(gpu.0, cpu.0, "output", tolerance: (relative: 1e-2, absolute: 1e-2))
        assertParity(gpu.1, cpu.1, "gradient", tolerance: (relative: 1e-2, absolute: 2e-2))
    }
}
