import Foundation
import MegatronTensor
import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// Activations, SwiGLU, casts and Philox dropout against CPU references; counts cover the
/// vectorized body, scalar tails and misaligned (scalar-only) pointers.
final class ElementwiseNeuralGPUTests: XCTestCase {
    private let counts = [1, 7, 8, 1003, 100_000]

    func testActivationsForwardAndBackward() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 41)
        for type in KernelElementType.allCases {
            for activation in Activation.allCases {
                for count in counts {
                    let label = "\(activation) \(type) count \(count)"
                    let x = random.values(count, type, -6, 6), g = random.values(count, type)
                    let dx = try gpu.upload(x, as: type), dg = try gpu.upload(g, as: type)
                    let out = try gpu.poisoned(count, as: type), grad = try gpu.poisoned(count, as: type)
                    defer { gpu.free(dx, dg, out, grad) }
                    try nn.activationForward(activation, out: out.address, input: dx.address, count: count, type: type, stream: gpu.stream)
                    try nn.activationBackward(activation, dx: grad.address, gradient: dg.address, input: dx.address, count: count,
                                              type: type, stream: gpu.stream)
                    let reference = x.map { Self.activation(activation, Double($0)) }
                    assertClose(try gpu.download(out, count: count, as: type), reference.map(\.value), type.tolerance, label + " forward")
                    assertClose(try gpu.download(grad, count: count, as: type), zip(g, reference).map { Double($0) * $1.derivative },
                                type.tolerance, label + " backward")
                }
            }
        }
    }

    /// A pointer 4 bytes past an aligned one takes the scalar path and gives the same values.
    func testMisalignedPointersUseTheScalarPath() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 42)
        let x = random.values(1001, .float32, -3, 3)
        let dx = try gpu.upload(x), out = try gpu.poisoned(1001)
        defer { gpu.free(dx, out) }
        try nn.activationForward(.silu, out: out.address + 4, input: dx.address + 4, count: 1000, type: .float32, stream: gpu.stream)
        let result = try gpu.download(out, count: 1001, as: .float32)
        assertClose(Array(result[1...]), x[1...].map { Self.activation(.silu, Double($0)).value }, 1e-5, "misaligned silu")
        XCTAssertTrue(result[0].isNaN, "the element before the range is untouched")
    }

    func testSwiGLUForwardAndBackward() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 43)
        for type in KernelElementType.allCases {
            for (rows, half) in [(17, 256), (3, 13)] {
                let label = "swiglu \(type) [\(rows), 2x\(half)]"
                let input = random.values(rows * 2 * half, type, -4, 4), g = random.values(rows * half, type)
                let dIn = try gpu.upload(input, as: type), dg = try gpu.upload(g, as: type)
                let out = try gpu.poisoned(rows * half, as: type), grad = try gpu.poisoned(rows * 2 * half, as: type)
                defer { gpu.free(dIn, dg, out, grad) }
                try nn.swigluForward(out.address, input: dIn.address, rows: rows, half: half, type: type, stream: gpu.stream)
                try nn.swigluBackward(grad.address, gradient: dg.address, input: dIn.address, rows: rows, half: half, type: type,
                                      stream: gpu.stream)
                var forward: [Double] = [], backward: [Double] = []
                for row in 0..<rows {
                    var da: [Double] = [], db: [Double] = []
                    for c in 0..<half {
                        let a = Double(input[row * 2 * half + c]), b = Double(input[row * 2 * half + half + c])
                        let gv = Double(g[row * half + c]), silu = Self.activation(.silu, a)
                        forward.append(silu.value * b)
                        da.append(gv * b * silu.derivative)
                        db.append(gv * silu.value)
                    }
                    backward += da + db
                }
                assertClose(try gpu.download(out, count: rows * half, as: type), forward, type.tolerance, label + " forward")
                assertClose(try gpu.download(grad, count: rows * 2 * half, as: type), backward, type.tolerance, label + " backward")
            }
        }
    }

    /// Casts round to nearest even exactly as Swift's conversions do, bit for bit, NaN and infinities included.
    func testCastsRoundToNearestEvenBitExactly() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 44)
        let special: [Float] = [0, -0, .infinity, -.infinity, 65504, 65520, 1e-8, -3.3895314e38, 1 + 1.0 / 256, 1 + 3.0 / 512]
        for count in counts {
            let values = special + random.floats(count, -1000, 1000) + random.floats(count, -1e-3, 1e-3)
            let n = values.count
            let source = try gpu.upload(values)
            defer { gpu.free(source) }
            for type in [KernelElementType.bfloat16, .float16] {
                let narrow = try gpu.poisoned(n, as: type), wide = try gpu.poisoned(n)
                defer { gpu.free(narrow, wide) }
                try nn.cast(narrow.address, to: type, input: source.address, from: .float32, count: n, stream: gpu.stream)
                let bits = try gpu.download(narrow, count: n, as: UInt16.self)
                let expected = type == .bfloat16 ? values.map(BF16.bits) : values.map { Float16($0).bitPattern }
                XCTAssertEqual(bits, expected, "fp32 -> \(type), \(n) values")
                try nn.cast(wide.address, to: .float32, input: narrow.address, from: type, count: n, stream: gpu.stream)
                XCTAssertEqual(try gpu.download(wide, count: n, as: Float.self).map(\.bitPattern),
                               values.map { type.round($0).bitPattern }, "\(type) -> fp32 widens exactly")
            }
            // bf16 <-> fp16 goes through fp32 and rounds once.
            let bf16 = try gpu.upload(values, as: .bfloat16), f16 = try gpu.poisoned(n, as: .float16)
            defer { gpu.free(bf16, f16) }
            try nn.cast(f16.address, to: .float16, input: bf16.address, from: .bfloat16, count: n, stream: gpu.stream)
            XCTAssertEqual(try gpu.download(f16, count: n, as: UInt16.self), values.map { Float16(BF16.round($0)).bitPattern })
        }
        let nan = try gpu.upload([Float.nan]), out = try gpu.poisoned(1, as: .bfloat16)
        defer { gpu.free(nan, out) }
        try nn.cast(out.address, to: .bfloat16, input: nan.address, from: .float32, count: 1, stream: gpu.stream)
        XCTAssertTrue(try gpu.download(out, count: 1, as: .bfloat16)[0].isNaN)
    }

    /// The GPU mask and values equal the CPU tensor library's dropout (MegatronTensor's Philox
    /// stream) for the same seed and offset, element for element and bit for bit.
    func testDropoutMatchesTheCPUPhiloxStreamExactly() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 45)
        let cases: [(count: Int, p: Float, seed: UInt64, offset: UInt64)] = [
            (1, 0.5, 1, 0), (7, 0.1, 42, 3), (1003, 0.1, 0x1234_5678_9abc_def0, 0xffff_ffff_0000_0002), (100_000, 0.3, 7, 1),
        ]
        let dtypes: [(KernelElementType, DType)] = [(.float32, .float32), (.bfloat16, .bfloat16), (.float16, .float16)]
        for (count, p, seed, offset) in cases {
            var uniform = [Float](repeating: 0, count: count)
            uniform.withUnsafeMutableBufferPointer { Philox.fillUniform($0, seed: seed, offset: offset) }
            let expectedMask = uniform.map { $0 >= p ? UInt8(1) : 0 }
            for (type, dtype) in dtypes {
                let label = "dropout \(type) count \(count) p \(p)"
                let x = random.values(count, type, -2, 2)
                let cpu = Ops.dropout(Tensor(shape: [count], values: x, dtype: dtype), p: p, seed: seed, offset: offset).floats()
                let input = try gpu.upload(x, as: type), out = try gpu.poisoned(count, as: type)
                let mask = try gpu.upload([UInt8](repeating: 7, count: count))
                defer { gpu.free(input, out, mask) }
                try nn.dropout(out.address, mask: mask.address, input: input.address, count: count, probability: p, seed: seed,
                               offset: offset, type: type, stream: gpu.stream)
                XCTAssertEqual(try gpu.download(mask, count: count, as: UInt8.self), expectedMask, label + " mask")
                XCTAssertEqual(try gpu.download(out, count: count, as: type).map(\.bitPattern), cpu.map(\.bitPattern), label + " values")
            }
        }
    }

    static func activation(_ activation: Activation, _ x: Double) -> (value: Double, derivative: Double) {
        switch activation {
        case .geluTanh:
            // 0.5 (1 + tanh u) written as sigmoid(2u): no cancellation in the negative tail, even in float64.
            let k = (2 / Double.pi).squareRoot(), u = k * (x + 0.044715 * x * x * x)
            let s = 1 / (1 + exp(-2 * u))
            return (x * s, s + x * 2 * s * (1 - s) * k * (1 + 3 * 0.044715 * x * x))
        case .geluErf:
            let cdf = 0.5 * erfc(-x / 2.0.squareRoot()), pdf = exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
            return (x * cdf, cdf + x * pdf)
        case .silu:
            let s = 1 / (1 + exp(-x))
            return (x * s, s * (1 + x * (1 - s)))
        }
    }
}
