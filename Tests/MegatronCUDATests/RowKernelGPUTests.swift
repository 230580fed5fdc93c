import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// Softmax and layer / RMS norm kernels against float64 CPU references, for every storage type,
/// on shapes that take the vectorized path (columns % 8 == 0), the scalar path, and rows wider
/// than one pass of the block; the norms also on GPT-2's width (a warp per row, several rows per
/// block) and with the fused residual add.
final class RowKernelGPUTests: XCTestCase {
    private let shapes = [(rows: 37, columns: 1000), (rows: 5, columns: 77), (rows: 3, columns: 12288), (rows: 1, columns: 1)]
    private let normShapes = [(rows: 37, columns: 1000), (rows: 5, columns: 77), (rows: 3, columns: 12288),
                              (rows: 257, columns: 768), (rows: 70, columns: 4096), (rows: 2, columns: 8)]

    func testSoftmaxAndLogSoftmaxForwardBackward() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 21)
        for type in KernelElementType.allCases {
            for (rows, columns) in shapes {
                let count = rows * columns
                let x = random.values(count, type, -4, 4), g = random.values(count, type)
                for log in [false, true] {
                    let label = "\(log ? "log_" : "")softmax \(type) [\(rows), \(columns)]"
                    let dx = try gpu.upload(x, as: type), out = try gpu.poisoned(count, as: type)
                    try nn.softmaxForward(out.address, input: dx.address, rows: rows, columns: columns, log: log,
                                          type: type, stream: gpu.stream)
                    let y = try gpu.download(out, count: count, as: type)
                    let reference = Self.softmax(x, columns: columns, log: log)
                    assertClose(y, reference, type.tolerance, label + " forward")

                    // Backward from the stored forward output.
                    let dg = try gpu.upload(g, as: type), grad = try gpu.poisoned(count, as: type)
                    try nn.softmaxBackward(grad.address, gradient: dg.address, output: out.address, rows: rows, columns: columns,
                                           log: log, type: type, stream: gpu.stream)
                    let expected = Self.softmaxBackward(g, y: y, columns: columns, log: log)
                    assertClose(try gpu.download(grad, count: count, as: type), expected, type.tolerance, label + " backward")
                    gpu.free(dx, out, dg, grad)
                }
            }
        }
    }

    func testLayerNormForwardBackwardWithAndWithoutBias() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 22)
        for type in KernelElementType.allCases {
            for (rows, columns) in normShapes {
                for withBias in [true, false] {
                    let label = "layer norm \(type) [\(rows), \(columns)] bias \(withBias)"
                    let x = random.values(rows * columns, type, -3, 5), g = random.values(rows * columns, type)
                    let w = random.values(columns, type, 0.5, 1.5), b = random.values(columns, type)
                    let result = try runNorm(gpu, nn, rms: false, type: type, rows: rows, columns: columns, x: x, g: g, w: w,
                                             b: withBias ? b : nil)
                    let reference = Self.normReference(rms: false, x: x, g: g, w: w, b: withBias ? b : nil, columns: columns,
                                                       epsilon: 1e-5)
                    assertClose(result.y, reference.y, type.tolerance, label + " y")
                    assertClose(result.mean, reference.mean, 1e-5, label + " mean")
                    assertClose(result.rstd, reference.rstd, 1e-5, label + " rstd")
                    assertClose(result.dx, reference.dx, type.tolerance, label + " dx")
                    assertClose(result.dw, reference.dw, type.tolerance, label + " dweight")
                    if withBias { assertClose(result.db, reference.db, type.tolerance, label + " dbias") }
                }
            }
        }
    }

    func testRMSNormForwardBackward() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 23)
        for type in KernelElementType.allCases {
            for (rows, columns) in normShapes {
                let label = "rms norm \(type) [\(rows), \(columns)]"
                let x = random.values(rows * columns, type, -3, 5), g = random.values(rows * columns, type)
                let w = random.values(columns, type, 0.5, 1.5)
                let result = try runNorm(gpu, nn, rms: true, type: type, rows: rows, columns: columns, x: x, g: g, w: w, b: nil)
                let reference = Self.normReference(rms: true, x: x, g: g, w: w, b: nil, columns: columns, epsilon: 1e-5)
                assertClose(result.y, reference.y, type.tolerance, label + " y")
                assertClose(result.rstd, reference.rstd, 1e-5, label + " rstd")
                assertClose(result.dx, reference.dx, type.tolerance, label + " dx")
                assertClose(result.dw, reference.dw, type.tolerance, label + " dweight")
            }
        }
    }

    /// Parameter gradients are reduced in a fixed order: two runs give the same bits.
    func testNormBackwardParameterGradientsAreDeterministic() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 24)
        let (rows, columns) = (1100, 1024)   // more rows than the backward has teams: each team sums several rows
        let x = random.values(rows * columns, .float32), g = random.values(rows * columns, .float32)
        let w = random.values(columns, .float32), b = random.values(columns, .float32)
        let first = try runNorm(gpu, nn, rms: false, type: .float32, rows: rows, columns: columns, x: x, g: g, w: w, b: b)
        let second = try runNorm(gpu, nn, rms: false, type: .float32, rows: rows, columns: columns, x: x, g: g, w: w, b: b)
        XCTAssertEqual(first.dw.map(\.bitPattern), second.dw.map(\.bitPattern))
        XCTAssertEqual(first.db.map(\.bitPattern), second.db.map(\.bitPattern))
        let reference = Self.normReference(rms: false, x: x, g: g, w: w, b: b, columns: columns, epsilon: 1e-5)
        assertClose(first.dw, reference.dw, 1e-5, "dweight over 1100 rows")
        assertClose(first.db, reference.db, 1e-5, "dbias over 1100 rows")
    }

    func testNormRejectsRowsWiderThanRegisters() throws {
        let (gpu, nn) = try NeuralFixture.require()
        let columns = CUDAKernels.normMaxColumns + 8
        XCTAssertThrowsError(try nn.rmsNormBackward(16, weightGradient: 16, gradient: 16, input: 16, weight: 16, rstd: 16,
                                                    rows: 1, columns: columns, scratch: 16, type: .float32, stream: gpu.stream)) {
            XCTAssertTrue("\($0)".contains("registers"), "\($0)")
        }
    }

    /// The fused residual add: forward normalizes (and writes) x + residual rounded to the storage
    /// type; backward adds the gradient of the sum to dx. Every block size, so blocks hold one team
    /// or several (warp-wide teams at 768 columns, 128- and 256-thread teams at 4096).
    func testNormsWithResidualAddAtEveryBlockSize() throws {
        let (gpu, nn) = try NeuralFixture.require()
        let saved = nn.normThreads
        defer { nn.normThreads = saved }
        var random = SplitMix64(seed: 25)
        for threads in [32, 64, 128, 256, 512, 1024] {
            nn.normThreads = threads
            for type in KernelElementType.allCases {
                for (rows, columns) in [(rows: 129, columns: 768), (rows: 70, columns: 4096), (rows: 9, columns: 100)] {
                    for rms in [false, true] {
                        let label = "\(rms ? "rms" : "layer") norm + residual \(type) [\(rows), \(columns)] \(threads) threads"
                        let count = rows * columns
                        let x = random.values(count, type, -3, 5), r = random.values(count, type), g = random.values(count, type)
                        let gs = random.values(count, type)
                        let w = random.values(columns, type, 0.5, 1.5), b = random.values(columns, type)
                        let bias = rms ? nil : b
                        let result = try runNorm(gpu, nn, rms: rms, type: type, rows: rows, columns: columns, x: x, g: g, w: w,
                                                 b: bias, residual: r, gradSum: gs)
                        let sum = zip(x, r).map { type.round($0 + $1) }
                        XCTAssertEqual(result.sum, sum, label + " sum")
                        let reference = Self.normReference(rms: rms, x: sum, g: g, w: w, b: bias, columns: columns, epsilon: 1e-5)
                        assertClose(result.y, reference.y, type.tolerance, label + " y")
                        assertClose(result.rstd, reference.rstd, 1e-5, label + " rstd")
                        assertClose(result.dx, zip(reference.dx, gs).map { $0 + Double($1) }, type.tolerance, label + " dx")
                        assertClose(result.dw, reference.dw, type.tolerance, label + " dweight")
                        if !rms { assertClose(result.db, reference.db, type.tolerance, label + " dbias") }
                    }
                }
            }
        }
    }

    /// Each kernel instantiation (chunks per thread, norm.cu's `_<slots>` kernels) on rows that take
    /// it, vectorized and element by element (columns not a multiple of 8), plain and with the fused
    /// residual add, with enough rows that the persistent backward blocks loop over several row
    /// groups (its pipelined variants load the next row while reducing the current one).
    func testNormsAtEveryChunksPerThreadCount() throws {
        let (gpu, nn) = try NeuralFixture.require()
        let saved = nn.normThreads
        defer { nn.normThreads = saved }
        // (rows, columns, normThreads): forward / backward [team, slots] in the comments.
        // More rows than the backward has blocks x teams (on 132 SMs: 264 blocks at [300, 4096], 132 at
        // [300, 4100], 660 at [700, 1500], 264 x 8 warp teams at [2200, 763]), so they loop.
        let cases = [(rows: 300, columns: 4096, threads: 128),   // [128, 4] / [512, 1]
                     (rows: 300, columns: 4100, threads: 128),   // [160, 4] / [512, 2], scalar path
                     (rows: 700, columns: 1500, threads: 128),   // [128, 2] / [192, 1], scalar path
                     (rows: 50, columns: 2000, threads: 32),     // [64, 4] / [128, 2]
                     (rows: 20, columns: 3000, threads: 128),    // [128, 3] / [384, 1]
                     (rows: 300, columns: 4096, threads: 64),    // [128, 4] / [256, 2]
                     (rows: 90, columns: 4096, threads: 512),    // [512, 1] / [512, 1]
                     (rows: 2200, columns: 763, threads: 256),   // [32, 3] / [32, 3], 8 rows per block, scalar path
                     (rows: 200, columns: 250, threads: 64)]     // [32, 1] / [32, 1], scalar path
        var covered = Set<String>()
        for (_, columns, threads) in cases {
            for backward in [false, true] {
                let layout = try XCTUnwrap(NormLaunchPlan.layout(columns: columns, backward: backward, normThreads: threads))
                covered.insert("\(backward ? "backward" : "forward") \(layout.slots)")
            }
        }
        XCTAssertEqual(covered, ["forward 1", "forward 2", "forward 3", "forward 4", "backward 1", "backward 2", "backward 3"])
        var random = SplitMix64(seed: 26)
        for (index, (rows, columns, threads)) in cases.enumerated() {
            nn.normThreads = threads
            // Cases of a million elements take one type each, in turn (the CPU reference is slow in a
            // debug build); the small ones every type.
            let types = rows * columns > 500_000 ? [KernelElementType.allCases[index % 3]] : KernelElementType.allCases
            for type in types {
                for rms in [false, true] {
                    for fused in [false, true] {
                        let label = "\(rms ? "rms" : "layer") norm\(fused ? " + residual" : "") \(type) [\(rows), \(columns)] "
                            + "\(threads) threads"
                        let count = rows * columns
                        let x = random.values(count, type, -3, 5), g = random.values(count, type)
                        let r = fused ? random.values(count, type) : nil, gs = fused ? random.values(count, type) : nil
                        let w = random.values(columns, type, 0.5, 1.5), bias = rms ? nil : random.values(columns, type)
                        let result = try runNorm(gpu, nn, rms: rms, type: type, rows: rows, columns: columns, x: x, g: g, w: w,
                                                 b: bias, residual: r, gradSum: gs)
                        let input = r.map { zip(x, $0).map { type.round($0 + $1) } } ?? x
                        if fused { XCTAssertEqual(result.sum, input, label + " sum") }
                        let reference = Self.normReference(rms: rms, x: input, g: g, w: w, b: bias, columns: columns, epsilon: 1e-5)
                        let dx = gs.map { zip(reference.dx, $0).map { $0 + Double($1) } } ?? reference.dx
                        assertClose(result.y, reference.y, type.tolerance, label + " y")
                        if !rms { assertClose(result.mean, reference.mean, 1e-5, label + " mean") }
                        assertClose(result.rstd, reference.rstd, 1e-5, label + " rstd")
                        assertClose(result.dx, dx, type.tolerance, label + " dx")
                        assertClose(result.dw, reference.dw, type.tolerance, label + " dweight")
                        if !rms { assertClose(result.db, reference.db, type.tolerance, label + " dbias") }
                    }
                }
            }
        }
    }

    /// The layer norm statistics are the corrected two-pass ones: a row far from zero (mean 1000,
    /// spread 0.01) keeps its variance, which a sum-of-squares shortcut would lose to cancellation,
    /// and y stays accurate although an fp32 mean alone is off by up to half its ulp (3e-5, 0.5% of
    /// the std 0.0058), which put y's error at 0.3-1.8%: the kernel takes y from (x - m) - d, with
    /// x - m exact and d = mean(x - m) the correction to the first mean m. An fp32 emulation of the
    /// kernel's summation order gives y errors near 6e-8; 1e-5 leaves room for FMA contraction.
    func testLayerNormVarianceOfRowsFarFromZero() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 27)
        for (rows, columns) in [(rows: 8, columns: 4096), (rows: 8, columns: 768), (rows: 5, columns: 1001)] {
            let x = random.floats(rows * columns, 999.99, 1000.01), g = random.values(rows * columns, .float32)
            let w = random.values(columns, .float32, 0.5, 1.5)
            let result = try runNorm(gpu, nn, rms: false, type: .float32, rows: rows, columns: columns, x: x, g: g, w: w, b: nil)
            let reference = Self.normReference(rms: false, x: x, g: g, w: w, b: nil, columns: columns, epsilon: 1e-5)
            assertClose(result.rstd, reference.rstd, 1e-3, "rstd [\(rows), \(columns)]")
            // m + d rounded to fp32: within half an ulp of 1000 (3e-8 relative).
            assertClose(result.mean, reference.mean, 1e-7, "mean [\(rows), \(columns)]")
            assertClose(result.y, reference.y, 1e-5, "y [\(rows), \(columns)]")
        }
    }

    // MARK: Running and references

    private struct NormResult { var y, sum, mean, rstd, dx, dw, db: [Float] }

    /// Forward then backward of one norm; with `residual` (and then `gradSum`) the fused residual add.
    private func runNorm(_ gpu: GPUFixture, _ nn: CUDAKernels, rms: Bool, type: KernelElementType, rows: Int, columns: Int,
                         x: [Float], g: [Float], w: [Float], b: [Float]?, residual: [Float]? = nil,
                         gradSum: [Float]? = nil) throws -> NormResult {
        let count = rows * columns
        let dx = try gpu.upload(x, as: type), dg = try gpu.upload(g, as: type), dw = try gpu.upload(w, as: type)
        let db = try b.map { try gpu.upload($0, as: type) }
        let dr = try residual.map { try gpu.upload($0, as: type) }, dgs = try gradSum.map { try gpu.upload($0, as: type) }
        let y = try gpu.poisoned(count, as: type), grad = try gpu.poisoned(count, as: type)
        let sum = try gpu.poisoned(count, as: type)
        let mean = try gpu.poisoned(rows), rstd = try gpu.poisoned(rows)
        let wGrad = try gpu.poisoned(columns, as: type), bGrad = try gpu.poisoned(columns, as: type)
        let scratch = try gpu.poisoned(nn.normBackwardScratchCount(rows: rows, columns: columns, withBias: b != nil))
        defer {
            gpu.free(dx, dg, dw, y, grad, sum, mean, rstd, wGrad, bGrad, scratch)
            for allocation in [db, dr, dgs].compactMap({ $0 }) { gpu.free(allocation) }
        }
        let (residualAddress, sumAddress) = (dr?.address ?? 0, dr == nil ? 0 : sum.address)
        // Backward normalizes what forward did: the sum when there is a residual.
        let normInput = dr == nil ? dx.address : sum.address
        if rms {
            try nn.rmsNormForward(y.address, rstd: rstd.address, input: dx.address, weight: dw.address, residual: residualAddress,
                                  sum: sumAddress, rows: rows, columns: columns, epsilon: 1e-5, type: type, stream: gpu.stream)
            try nn.rmsNormBackward(grad.address, weightGradient: wGrad.address, gradient: dg.address,
                                   sumGradient: dgs?.address ?? 0, input: normInput, weight: dw.address, rstd: rstd.address,
                                   rows: rows, columns: columns, scratch: scratch.address, type: type, stream: gpu.stream)
        } else {
            try nn.layerNormForward(y.address, mean: mean.address, rstd: rstd.address, input: dx.address, weight: dw.address,
                                    bias: db?.address ?? 0, residual: residualAddress, sum: sumAddress, rows: rows,
                                    columns: columns, epsilon: 1e-5, type: type, stream: gpu.stream)
            try nn.layerNormBackward(grad.address, weightGradient: wGrad.address, biasGradient: b == nil ? 0 : bGrad.address,
                                     gradient: dg.address, sumGradient: dgs?.address ?? 0, input: normInput, weight: dw.address,
                                     mean: mean.address, rstd: rstd.address, rows: rows, columns: columns,
                                     scratch: scratch.address, type: type, stream: gpu.stream)
        }
        return NormResult(y: try gpu.download(y, count: count, as: type), sum: try gpu.download(sum, count: count, as: type),
                          mean: try gpu.download(mean, count: rows, as: .float32),
                          rstd: try gpu.download(rstd, count: rows, as: .float32), dx: try gpu.download(grad, count: count, as: type),
                          dw: try gpu.download(wGrad, count: columns, as: type), db: try gpu.download(bGrad, count: columns, as: type))
    }

    static func softmax(_ x: [Float], columns: Int, log: Bool) -> [Double] {
        stride(from: 0, to: x.count, by: columns).flatMap { start -> [Double] in
            let row = x[start..<start + columns].map(Double.init)
            let max = row.max()!
            let logSum = Foundation.log(row.reduce(0) { $0 + exp($1 - max) })
            return row.map { log ? $0 - max - logSum : exp($0 - max - logSum) }
        }
    }

    static func softmaxBackward(_ g: [Float], y: [Float], columns: Int, log: Bool) -> [Double] {
        stride(from: 0, to: g.count, by: columns).flatMap { start -> [Double] in
            let range = start..<start + columns
            let gs = g[range].map(Double.init), ys = y[range].map(Double.init)
            if log {
                let sum = gs.reduce(0, +)
                return zip(gs, ys).map { $0 - exp($1) * sum }
            }
            let dot = zip(gs, ys).reduce(0) { $0 + $1.0 * $1.1 }
            return zip(gs, ys).map { $1 * ($0 - dot) }
        }
    }

    static func normReference(rms: Bool, x: [Float], g: [Float], w: [Float], b: [Float]?, columns: Int, epsilon: Double)
        -> (y: [Double], mean: [Double], rstd: [Double], dx: [Double], dw: [Double], db: [Double])
    {
        var result = (y: [Double](), mean: [Double](), rstd: [Double](), dx: [Double](),
                      dw: [Double](repeating: 0, count: columns), db: [Double](repeating: 0, count: columns))
        let n = Double(columns)
        for start in stride(from: 0, to: x.count, by: columns) {
            let xs = x[start..<start + columns].map(Double.init), gs = g[start..<start + columns].map(Double.init)
            let mean = rms ? 0 : xs.reduce(0, +) / n
            let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
            let rstd = 1 / (variance + epsilon).squareRoot()
            let xhat = xs.map { ($0 - mean) * rstd }
            let gw = (0..<columns).map { gs[$0] * Double(w[$0]) }
            let meanGw = rms ? 0 : gw.reduce(0, +) / n
            let meanGwXhat = zip(gw, xhat).reduce(0) { $0 + $1.0 * $1.1 } / n
            result.mean.append(mean)
            result.rstd.append(rstd)
            for c in 0..<columns {
                result.y.append(xhat[c] * Double(w[c]) + (b.map { Double($0[c]) } ?? 0))
                result.dx.append(rstd * (gw[c] - meanGw - xhat[c] * meanGwXhat))
                result.dw[c] += gs[c] * xhat[c]
                result.db[c] += gs[c]
            }
        }
        return result
    }
}
