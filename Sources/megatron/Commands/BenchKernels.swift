import ArgumentParser
import Foundation
import MegatronCUDA
import MegatronTensor

/// `megatron bench kernels`: the memory-bound neural-network kernels (layer / RMS norm, softmax,
/// GeLU, SwiGLU, dropout, casts, cross-entropy, AdamW, embedding backward, fp8 casts and amax, rotary embedding) on
/// tensors of `--megabytes` or more, timed with CUDA events. Each reports its minimum device-memory traffic (every input read
/// once, every output written once) per second, and that as a share of a device-to-device copy
/// (cuMemcpyDtoDAsync, bytes read plus written) measured in the same run. The norms (plain and fused
/// with the residual add) also run at `--norm-shapes`, by default GPT-2's [16384, 768], whose 24 MiB
/// tensors partly fit in L2: their share of copy bandwidth can pass 100%.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the fused memory-bound kernels against a device-to-device copy (GB/s and ratio).")

    @Option(help: "CUDA device index (default: LOCAL_RANK, else 0).") var device: Int?
    @Option(help: "Size of each kernel's main tensor in MiB (at least 64).") var megabytes = 256
    @Option(help: "Row width (hidden size) of the norm and softmax cases.") var columns = 4096
    @Option(help: "Vocabulary of the cross-entropy and embedding-backward cases.") var vocab = 50304
    @Option(help: "More ROWSxCOLUMNS shapes for the norm cases, comma-separated (default: GPT-2's training step, 16384x768).")
    var normShapes = "16384x768"
    @Option(help: "Comma-separated thread counts per row block to compare for all row kernels (norms, softmax, cross-entropy, forward and backward); default: the library's per-kernel choices.")
    var rowThreads: String?
    @Option(help: "Untimed warm-up per kernel, in milliseconds.") var warmupMs = 100.0
    @Option(help: "Length of each timed trial, in milliseconds (at least 5 runs).") var trialMs = 20.0
    @Option(help: "Timed trials per kernel; the median is reported.") var trials = 5

    func validate() throws {
        guard megabytes >= 64 else { throw ValidationError("--megabytes must be at least 64 (got \(megabytes)): smaller tensors sit in L2") }
        guard columns > 0, columns % 8 == 0 else { throw ValidationError("--columns must be a positive multiple of 8 (got \(columns))") }
        guard vocab > 0, vocab % 8 == 0 else { throw ValidationError("--vocab must be a positive multiple of 8 (got \(vocab))") }
        _ = try extraNormShapes()
    }

    /// `--norm-shapes` as (rows, columns) pairs.
    func extraNormShapes() throws -> [(rows: Int, columns: Int)] {
        try normShapes.split(separator: ",").map { item in
            let parts = item.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts[0] > 0, parts[1] > 0, parts[1] % 8 == 0 else {
                throw ValidationError("--norm-shapes takes ROWSxCOLUMNS items with columns a multiple of 8, got '\(item)'")
            }
            return (parts[0], parts[1])
        }
    }

    func run() throws {
        let context = try CUDAContext.shared(ordinal: try CUDADevice.ordinal(index: device, environment: ProcessInfo.processInfo.environment))
        let gpu = context.device
        let bench = KernelBench(context: context, warmupMs: warmupMs, trialMs: trialMs, trials: trials)
        print("device \(gpu.ordinal): \(gpu.properties.name), \(gpu.properties.multiprocessorCount) SMs, "
              + "\(gpu.properties.architecture); kernels loaded in "
              + String(format: "%.1f ms (%d compiled, %d from cache)", bench.kernels.loadReport.milliseconds,
                       bench.kernels.loadReport.compiledCount, bench.kernels.loadReport.cachedCount))
        let size = megabytes << 20
        let copy = try bench.copy(bytes: size)
        print(String(format: "device-to-device copy of %d MiB: %.3f ms, %.0f GB/s (read + write)", megabytes, copy.ms, copy.gbPerSecond))
        print("kernel                      shape                 ms      GB/s   of copy")
        // Without --row-threads one pass with the library's own per-kernel choices (what training runs).
        let threadCounts: [Int?] = try rowThreads.map { list in
            try list.split(separator: ",").map { item -> Int? in
                guard let value = Int(item), value >= 32, value <= 1024 else {
                    throw ValidationError("--row-threads takes thread counts in 32...1024, got '\(item)'")
                }
                return value
            }
        } ?? [nil]
        var results: [KernelBenchResult] = []
        for threads in threadCounts {
            if let threads {
                bench.kernels.rowThreads = threads
                bench.kernels.rowBackwardThreads = threads
                bench.kernels.normThreads = threads
            }
            let norms = try [(rows: size / (columns * 2), columns: columns)] + extraNormShapes()
            results += try bench.rowCases(bytes: size, columns: columns, vocab: vocab, normShapes: norms).map {
                var result = $0
                if let threads, threadCounts.count > 1 { result.name += " t\(threads)" }
                return result
            }
        }
        results += try bench.elementwiseCases(bytes: size, columns: columns)
        results += try bench.embeddingBackwardCases(bytes: size, columns: columns, vocab: vocab)
        results += try bench.fp8Cases(bytes: size)
        results += try bench.rotaryCases(bytes: size)
        for result in results {
            print(result.name.padding(toLength: 27, withPad: " ", startingAt: 0) + " "
                  + result.shape.padding(toLength: 18, withPad: " ", startingAt: 0)
                  + String(format: " %8.3f %8.0f %8.1f%%", result.ms, result.gbPerSecond, 100 * result.gbPerSecond / copy.gbPerSecond))
        }
        let stats = bench.allocator.statistics
        print("allocator: peak \(formatBytes(stats.peakAllocatedBytes)) allocated, \(formatBytes(stats.peakReservedBytes)) reserved")
    }
}

/// One timed kernel: milliseconds per call and its minimum traffic per second.
struct KernelBenchResult {
    var name: String
    var shape: String
    var ms: Double
    var gbPerSecond: Double
}

/// Buffers, inputs and timing for `BenchKernels`.
final class KernelBench {
    let device: CUDADevice
    let stream: CUDAStream
    let allocator: CachingAllocator
    let kernels: CUDAKernels
    let warmupMs: Double, trialMs: Double, trials: Int
    private var seed: UInt64 = 1

    /// Times on the GPU context training uses: its stream, allocator and kernel catalog.
    init(context: CUDAContext, warmupMs: Double, trialMs: Double, trials: Int) {
        (device, stream, allocator, kernels) = (context.device, context.stream, context.allocator, context.kernels)
        (self.warmupMs, self.trialMs, self.trials) = (warmupMs, trialMs, trials)
    }

    func copy(bytes: Int) throws -> KernelBenchResult {
        let source = try buffer(bytes / 4, .float32), target = try buffer(bytes / 4, .float32)
        defer { free(source, target) }
        return try measure("copy", "\(bytes >> 20) MiB", traffic: 2 * bytes) {
            try stream.copyDeviceToDevice(to: target.address, from: source.address, bytes: bytes)
        }
    }

    /// The row kernels (norms, softmax, cross-entropy), main tensors about `bytes` large; the norms
    /// also at each of `normShapes`.
    func rowCases(bytes: Int, columns: Int, vocab: Int, normShapes: [(rows: Int, columns: Int)]) throws -> [KernelBenchResult] {
        var results: [KernelBenchResult] = []
        for (rows, width) in normShapes { results += try normCases(rows: rows, columns: width) }
        let bf16 = KernelElementType.bfloat16
        let rows = bytes / (columns * 2), n = rows * columns   // bf16 [rows, columns]
        let shape = "[\(rows), \(columns)]"
        let s = n * 2
        do {   // softmax, bf16
            let x = try buffer(n, bf16), y = try buffer(n, bf16), g = try buffer(n, bf16), dx = try buffer(n, bf16)
            defer { free(x, y, g, dx) }
            results.append(try measure("softmax fwd bf16", shape, traffic: 2 * s) {
                try kernels.softmaxForward(y.address, input: x.address, rows: rows, columns: columns, type: bf16, stream: stream)
            })
            results.append(try measure("softmax bwd bf16", shape, traffic: 3 * s) {
                try kernels.softmaxBackward(dx.address, gradient: g.address, output: y.address, rows: rows, columns: columns,
                                       type: bf16, stream: stream)
            })
        }
        do {   // fused cross-entropy on bf16 logits
            let rows = max(1, bytes / (vocab * 2)), count = rows * vocab
            let logits = try buffer(count, bf16), dlogits = try buffer(count, bf16)
            let labels = try buffer(rows * 2, .float32)   // int64 labels: zeroed below, all class 0
            let loss = try buffer(rows, .float32), lse = try buffer(rows, .float32), grad = try buffer(rows, .float32)
            defer { free(logits, dlogits, labels, loss, lse, grad) }
            try kernels.fill(labels.address, count: rows * 2, value: 0, type: .float32, stream: stream)
            results.append(try measure("cross_entropy fwd bf16", "[\(rows), \(vocab)]", traffic: count * 2 + rows * 16) {
                try kernels.crossEntropyForward(loss: loss.address, logSumExp: lse.address, logits: logits.address, labels: labels.address,
                                           rows: rows, vocabulary: vocab, labelSmoothing: 0.1, type: bf16, stream: stream)
            })
            results.append(try measure("cross_entropy bwd bf16", "[\(rows), \(vocab)]", traffic: count * 4 + rows * 16) {
                try kernels.crossEntropyBackward(dlogits.address, gradient: grad.address, logits: logits.address, logSumExp: lse.address,
                                            labels: labels.address, rows: rows, vocabulary: vocab, labelSmoothing: 0.1, type: bf16,
                                            stream: stream)
            })
        }
        return results
    }

    /// Layer norm and RMS norm on bf16 [rows, columns], forward and backward, plain and fused with the
    /// residual add ("add+": forward reads x and the residual and writes their sum and its norm;
    /// backward also reads the gradient that reached the sum and adds it to dx).
    func normCases(rows: Int, columns: Int) throws -> [KernelBenchResult] {
        var results: [KernelBenchResult] = []
        let bf16 = KernelElementType.bfloat16
        let n = rows * columns, s = n * 2, shape = "[\(rows), \(columns)]"
        let x = try buffer(n, bf16), residual = try buffer(n, bf16), sum = try buffer(n, bf16), y = try buffer(n, bf16)
        let g = try buffer(n, bf16), gs = try buffer(n, bf16), dx = try buffer(n, bf16)
        let w = try buffer(columns, bf16), b = try buffer(columns, bf16), dw = try buffer(columns, bf16), db = try buffer(columns, bf16)
        let mean = try buffer(rows, .float32), rstd = try buffer(rows, .float32)
        let scratch = try buffer(kernels.normBackwardScratchCount(rows: rows, columns: columns, withBias: true), .float32)
        defer { free(x, residual, sum, y, g, gs, dx, w, b, dw, db, mean, rstd, scratch) }
        for fused in [false, true] {
            // Row tensors each direction reads and writes: fused forward x, residual -> sum, y; backward g, g_sum, x -> dx.
            let prefix = fused ? "add+" : "", (forwardTensors, backwardTensors) = fused ? (4, 4) : (2, 3)
            let (r, out, direct) = fused ? (residual.address, sum.address, gs.address) : (0, 0, 0)
            results.append(try measure(prefix + "layer_norm fwd bf16", shape, traffic: forwardTensors * s + rows * 8) {
                try kernels.layerNormForward(y.address, mean: mean.address, rstd: rstd.address, input: x.address, weight: w.address,
                                        bias: b.address, residual: r, sum: out, rows: rows, columns: columns, epsilon: 1e-5,
                                        type: bf16, stream: stream)
            })
            results.append(try measure(prefix + "layer_norm bwd bf16", shape, traffic: backwardTensors * s + rows * 8) {
                try kernels.layerNormBackward(dx.address, weightGradient: dw.address, biasGradient: db.address, gradient: g.address,
                                         sumGradient: direct, input: x.address, weight: w.address, mean: mean.address,
                                         rstd: rstd.address, rows: rows, columns: columns, scratch: scratch.address, type: bf16,
                                         stream: stream)
            })
            results.append(try measure(prefix + "rms_norm fwd bf16", shape, traffic: forwardTensors * s + rows * 4) {
                try kernels.rmsNormForward(y.address, rstd: rstd.address, input: x.address, weight: w.address, residual: r, sum: out,
                                      rows: rows, columns: columns, epsilon: 1e-5, type: bf16, stream: stream)
            })
            results.append(try measure(prefix + "rms_norm bwd bf16", shape, traffic: backwardTensors * s + rows * 4) {
                try kernels.rmsNormBackward(dx.address, weightGradient: dw.address, gradient: g.address, sumGradient: direct,
                                       input: x.address, weight: w.address, rstd: rstd.address, rows: rows, columns: columns,
                                       scratch: scratch.address, type: bf16, stream: stream)
            })
        }
        return results
    }

    /// The elementwise kernels (activations, dropout, casts) and AdamW, main tensors about `bytes` large.
    func elementwiseCases(bytes: Int, columns: Int) throws -> [KernelBenchResult] {
        var results: [KernelBenchResult] = []
        let bf16 = KernelElementType.bfloat16
        let rows = bytes / (columns * 2), n = rows * columns
        let s = n * 2
        do {   // activations and dropout, bf16
            let x = try buffer(n, bf16), y = try buffer(n, bf16), g = try buffer(n, bf16), dx = try buffer(n, bf16)
            defer { free(x, y, g, dx) }
            results.append(try measure("gelu_tanh fwd bf16", "[\(n)]", traffic: 2 * s) {
                try kernels.activationForward(.geluTanh, out: y.address, input: x.address, count: n, type: bf16, stream: stream)
            })
            results.append(try measure("gelu_tanh bwd bf16", "[\(n)]", traffic: 3 * s) {
                try kernels.activationBackward(.geluTanh, dx: dx.address, gradient: g.address, input: x.address, count: n, type: bf16,
                                          stream: stream)
            })
            results.append(try measure("swiglu fwd bf16", "[\(rows / 2), 2x\(columns)]", traffic: s + s / 2) {
                try kernels.swigluForward(y.address, input: x.address, rows: rows / 2, half: columns, type: bf16, stream: stream)
            })
            results.append(try measure("dropout p=0.1 bf16", "[\(n)]", traffic: 2 * s) {
                try kernels.dropout(y.address, input: x.address, count: n, probability: 0.1, seed: 1234, offset: 5, type: bf16, stream: stream)
            })
        }
        do {   // casts: fp32 [bytes / 4] <-> bf16
            let count = bytes / 4
            let wide = try buffer(count, .float32), narrow = try buffer(count, bf16)
            defer { free(wide, narrow) }
            results.append(try measure("cast f32->bf16", "[\(count)]", traffic: count * 6) {
                try kernels.cast(narrow.address, to: bf16, input: wide.address, from: .float32, count: count, stream: stream)
            })
            results.append(try measure("cast bf16->f32", "[\(count)]", traffic: count * 6) {
                try kernels.cast(wide.address, to: .float32, input: narrow.address, from: bf16, count: count, stream: stream)
            })
        }
        do {   // AdamW: fp32 params of `bytes`, fp32 grads and moments, bf16 copy, as 4 tensors in one launch
            let count = bytes / 4, parts = 4, part = count / parts
            let p = try buffer(count, .float32), g = try buffer(count, .float32), m = try buffer(count, .float32)
            let v = try buffer(count, .float32, low: 0, high: 1e-4), copy = try buffer(count, bf16)
            let tensors = (0..<parts).map { i in
                AdamWTensor(param: p.address + UInt64(i * part * 4), gradient: g.address + UInt64(i * part * 4),
                            expAvg: m.address + UInt64(i * part * 4), expAvgSq: v.address + UInt64(i * part * 4),
                            copy: copy.address + UInt64(i * part * 2), count: part)
            }
            let words = AdamWTensor.table(tensors)
            let table = try allocator.allocate(bytes: words.count * 8, stream: stream.allocatorKey)
            defer { free(p, g, m, v, copy, table) }
            let staging = PinnedStaging(device: device)
            try staging.copyToDevice(words, to: table.address, stream: stream)
            let deviceTable = DeviceTensorTable(address: table.address, tensorCount: parts, largestCount: part)
            var step = 0
            results.append(try measure("adamw f32 + bf16 copy", "\(parts) x [\(part)]", traffic: parts * part * 30) {
                step += 1
                try kernels.adamW(deviceTable, gradientType: .float32, step: AdamWStep(learningRate: 1e-4, step: step), stream: stream)
            })
        }
        return results
    }

    /// A device buffer of `count` elements of `type` holding uniform random values (never zeros:
    /// they hide indexing errors and can run faster than real data).
    func buffer(_ count: Int, _ type: KernelElementType, low: Float = -1, high: Float = 1) throws -> DeviceAllocation {
        let allocation = try allocator.allocate(bytes: max(count, 1) * type.byteCount, stream: stream.allocatorKey)
        seed += 1
        try kernels.uniform(allocation.address, count: count, seed: seed, low: low, high: high, type: type == .float16 ? .bfloat16 : type,
                            stream: stream)
        return allocation
    }

    func free(_ allocations: DeviceAllocation...) {
        try? stream.synchronize()
        allocations.forEach(allocator.free)
    }

    /// Median over `trials` event-timed trials of about `trialMs` each, after `warmupMs` of untimed calls.
    func measure(_ name: String, _ shape: String, traffic: Int, _ body: () throws -> Void) throws -> KernelBenchResult {
        let ms = try medianMilliseconds(stream: stream, device: device, warmupMs: warmupMs, trialMs: trialMs,
                                        trials: trials, body)
        return KernelBenchResult(name: name, shape: shape, ms: ms, gbPerSecond: Double(traffic) / ms / 1e6)
    }
}
