import ArgumentParser
import Foundation
import MegatronTensor

/// `megatron bench matmul`: fp32 GEMM throughput of the CPU backend (`cpuSgemm`), in GFLOP/s.
///
/// Build with `swift build -c release` first; a debug build measures the debug build.
/// `scripts/bench_numpy_matmul.py` prints numpy's figures for the same shapes.
struct BenchMatmul: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "Time the CPU fp32 GEMM (all four transpose combinations) and print GFLOP/s.")

    @Option(help: "m = n = k of the square products.")
    var size = 1024

    @Option(help: "Timed calls per shape (after one warm-up call); best and median are printed.")
    var `repeat` = 10

    @Flag(help: "Also time the shapes of a small transformer on CPU (projections, batched attention).")
    var transformerShapes = false

    func validate() throws {
        guard size >= 1 else { throw ValidationError("--size must be at least 1, got \(size)") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1, got \(`repeat`)") }
    }

    func run() throws {
        print("cpuSgemm fp32, \(ProcessInfo.processInfo.activeProcessorCount) cores, \(`repeat`) timed calls each")
        print("op  batch     m     n     k   best GFLOP/s  median GFLOP/s  best ms")
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            report(GemmShape(transA: ta, transB: tb, m: size, n: size, k: size))
        }
        if transformerShapes {
            for shape in GemmShape.smallTransformer { report(shape) }
        }
    }

    private func report(_ shape: GemmShape) {
        let seconds = shape.time(repeats: `repeat`)
        let best = seconds.min()!, median = seconds.sorted()[seconds.count / 2]
        let gflop = Double(shape.flops) / 1e9
        let name = (shape.transA ? "T" : "N") + (shape.transB ? "T" : "N")
        print(name.padding(toLength: 2, withPad: " ", startingAt: 0)
              + [shape.batch, shape.m, shape.n, shape.k].map { pad($0, 6) }.joined()
              + pad(gflop / best, 15, 1) + pad(gflop / median, 16, 1) + pad(best * 1e3, 9, 3))
    }
}

/// One GEMM problem to time: `batch` independent products over separate matrices.
private struct GemmShape {
    var transA = false, transB = false
    var batch = 1
    var m: Int, n: Int, k: Int

    var flops: Int { 2 * batch * m * n * k }

    /// GPT-ish layer at hidden 256, sequence 512, 4 heads of 64: QKV / MLP projections forward and
    /// backward (the weight gradient is a transposed product) and per-head attention products.
    static let smallTransformer = [
        GemmShape(transB: true, m: 512, n: 768, k: 256),
        GemmShape(transB: true, m: 512, n: 1024, k: 256),
        GemmShape(m: 512, n: 256, k: 1024),
        GemmShape(transA: true, m: 1024, n: 256, k: 512),
        GemmShape(transB: true, batch: 8, m: 128, n: 128, k: 64),
        GemmShape(batch: 8, m: 128, n: 64, k: 128),
        GemmShape(batch: 64, m: 32, n: 32, k: 32),
    ]

    /// Wall-clock seconds of each timed call (each covers the whole batch).
    func time(repeats: Int) -> [Double] {
        let a = randomFloats(batch * m * k), b = randomFloats(batch * k * n)
        var c = [Float](repeating: 0, count: batch * m * n)
        var seconds: [Double] = []
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let (a0, b0, c0) = (pa.baseAddress!, pb.baseAddress!, pc.baseAddress!)
                    let call = {
                        for i in 0..<batch {
                            cpuSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1,
                                     a: a0 + i * m * k, lda: transA ? m : k,
                                     b: b0 + i * k * n, ldb: transB ? k : n,
                                     beta: 0, c: c0 + i * m * n, ldc: n)
                        }
                    }
                    call()
                    for _ in 0..<repeats {
                        let start = DispatchTime.now().uptimeNanoseconds
                        call()
                        seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
                    }
                }
            }
        }
        return seconds
    }
}

/// Uniform values in [-1, 1) from a seeded xorshift generator: the system generator makes a
/// syscall per number, which dominated the run time for 1024 x 1024 inputs.
private func randomFloats(_ count: Int) -> [Float] {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - String(value).count)) + String(value)
}

private func pad(_ value: Double, _ width: Int, _ decimals: Int) -> String {
    let text = String(format: "%.\(decimals)f", value)
    return String(repeating: " ", count: max(0, width - text.count)) + text
}
