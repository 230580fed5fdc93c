import XCTest
@testable import MegatronTensor

/// Device `.cuda(0)` for GPU-vs-CPU parity tests, or an XCTSkip saying why this machine has none.
func requireGPU() throws -> Device {
    do {
        _ = try CUDAContext.shared(ordinal: 0)
        return .cuda(0)
    } catch {
        throw XCTSkip("no usable CUDA device here, GPU parity tests skipped: \(error)")
    }
}

/// A CPU tensor of normal draws (scaled and shifted), stored as `dtype`.
func randomTensor(_ shape: [Int], dtype: DType = .float32, seed: UInt64, scale: Float = 1, shift: Float = 0) -> Tensor {
    Tensor.normal(shape, mean: shift, std: scale, dtype: dtype, generator: PhiloxGenerator(seed: seed))
}

/// Tolerances for comparing a GPU result to the CPU reference: the CPU computes in fp32 and rounds
/// once, the GPU too, but transcendental functions and summation order differ in the last bits, and
/// bf16 / fp16 results round those differences to a coarser grid (one unit in the last place).
func tolerance(_ dtype: DType) -> (relative: Float, absolute: Float) {
    switch dtype {
    case .bfloat16: (1e-2, 1e-2)
    case .float16: (2e-3, 2e-3)
    default: (1e-5, 1e-5)
    }
}

/// Asserts that `gpu` (any device) and `cpu` agree in shape, dtype and every element, NaN with NaN.
func assertParity(_ gpu: Tensor, _ cpu: Tensor, _ label: String, tolerance tol: (relative: Float, absolute: Float)? = nil,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(gpu.shape, cpu.shape, "\(label): shape", file: file, line: line)
    XCTAssertEqual(gpu.dtype, cpu.dtype, "\(label): dtype", file: file, line: line)
    guard gpu.shape == cpu.shape else { return }
    let (relative, absolute) = tol ?? tolerance(cpu.dtype)
    let g = gpu.floats(), c = cpu.floats()
    var worst = 0, worstExcess: Float = 0
    for i in 0..<c.count {
        if c[i].isNaN || g[i].isNaN {
            if c[i].isNaN != g[i].isNaN { worst = i; worstExcess = .infinity; break }
            continue
        }
        if c[i] == g[i] { continue }   // equal infinities
        let excess = abs(g[i] - c[i]) - (absolute + relative * abs(c[i]))
        if excess > worstExcess { (worst, worstExcess) = (i, excess) }
    }
    XCTAssertTrue(worstExcess <= 0, "\(label): element \(worst) is \(g.isEmpty ? 0 : g[worst]) on the GPU, "
                  + "\(c.isEmpty ? 0 : c[worst]) on the CPU", file: file, line: line)
}
