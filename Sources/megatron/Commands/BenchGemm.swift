import ArgumentParser
import Foundation
import MegatronCUDA
import MegatronTensor

/// `megatron bench gemm`: bf16 GEMMs of GPT training shapes through cuBLASLt, timed with CUDA events.
///
/// For each linear layer (x[T,in]·W[out,in]ᵀ) it times the forward product and its two backward
/// products (dgrad dX = dY·W, wgrad dW = dYᵀ·X), with bf16 inputs and outputs and fp32
/// accumulation, and prints TFLOP/s. scripts/bench_torch_gemm.py times torch.matmul on the same
/// shapes for comparison.
struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time bf16 GEMMs of GPT training shapes (forward, dgrad, wgrad) on the GPU.")

    @Option(help: "CUDA device index (default: LOCAL_RANK, else 0).") var device: Int?
    @Option(help: "Tokens per step (micro-batch x sequence length).") var tokens = 8192
    @Option(help: "Hidden size.") var hidden = 2048
    @Option(help: "MLP hidden size (default 4 x hidden).") var ffnHidden: Int?
    @Option(help: "Vocabulary size (padded).") var vocab = 50304
    @Option(help: "Untimed warm-up per shape, in milliseconds (clocks settle under load).") var warmupMs = 200.0
    @Option(help: "Length of each timed trial, in milliseconds (at least 5 runs).") var trialMs = 20.0
    @Option(help: "Timed trials per shape; the median is reported.") var trials = 5
    @Flag(help: "Time cuBLASLt's top heuristic candidates per shape and keep the fastest (default: the heuristic's first).")
    var autotune = false
    @Option(help: "Comma-separated shape names to run (e.g. fc1.fwd,logits.wgrad); default all.") var only: String?
    @Flag(help: "The GEMMs as training runs them: forward with the bias epilogue, wgrad added into an fp32 main grad (beta 1) with the bias-gradient epilogue.")
    var training = false

    func run() throws {
        let selected = only.map { Set($0.split(separator: ",").map(String.init)) }
        let shapes = GemmBenchShape.gptTraining(tokens: tokens, hidden: hidden, ffn: ffnHidden ?? 4 * hidden, vocab: vocab)
            .filter { selected?.contains($0.name) ?? true }
            .map { training ? $0.asInTraining : $0 }
        if let selected, shapes.count != selected.count {
            throw ValidationError("--only names unknown shapes; known: "
                + GemmBenchShape.gptTraining(tokens: 1, hidden: 1, ffn: 1, vocab: 1).map(\.name).joined(separator: ","))
        }
        let start = Date()
        // The GPU context training uses: its stream, allocator and kernel catalog (GEMM handle of its own: --autotune).
        let context = try CUDAContext.shared(ordinal: try CUDADevice.ordinal(index: device, environment: ProcessInfo.processInfo.environment))
        let (gpu, stream, allocator, kernels) = (context.device, context.stream, context.allocator, context.kernels)
        let gemm = try CublasLtGemm(device: gpu, allocator: allocator, autotune: autotune)
        let report = kernels.loadReport
        print("device \(gpu.ordinal): \(gpu.properties.name), \(gpu.properties.multiprocessorCount) SMs, "
              + "\(gpu.properties.architecture), \(formatBytes(gpu.properties.totalMemoryBytes)); cuBLASLt \(gemm.version), "
              + (autotune ? "autotuned algorithms" : "heuristic's first algorithm")
              + (training ? "; training epilogues (fwd +bias, wgrad += fp32 +bgrad)" : ""))
        print(String(format: "start-up %.1f ms (kernels %.1f ms: %d compiled, %d from cache)",
                     Date().timeIntervalSince(start) * 1000, report.milliseconds, report.compiledCount, report.cachedCount))
        print("shape            M      K      N    ms/iter   TFLOP/s")
        var total = (flops: 0.0, ms: 0.0)
        for shape in shapes {
            let ms = try time(shape, gemm: gemm, kernels: kernels, allocator: allocator, stream: stream)
            let flops = shape.problem.flops
            total = (total.flops + flops, total.ms + ms)
            print(shape.name.padding(toLength: 12, withPad: " ", startingAt: 0)
                  + String(format: " %6d %6d %6d %10.3f %9.1f", shape.problem.m, shape.problem.k, shape.problem.n,
                           ms, flops / ms / 1e9))
        }
        print(String(format: "all shapes: %.3f ms, %.1f TFLOP/s", total.ms, total.flops / total.ms / 1e9))
        let stats = allocator.statistics
        print("allocator: peak \(formatBytes(stats.peakAllocatedBytes)) allocated, \(formatBytes(stats.peakReservedBytes)) reserved, "
              + "\(stats.deviceAllocations) cuMemAlloc calls, \(stats.cacheHits) cache hits")
    }

    /// Median milliseconds per GEMM over `trials` event-timed trials of about `trialMs` each,
    /// after `warmupMs` of untimed runs.
    private func time(_ shape: GemmBenchShape, gemm: CublasLtGemm, kernels: CUDAKernels,
                      allocator: CachingAllocator, stream: CUDAStream) throws -> Double {
        let p = shape.problem
        let sizes = [p.m * p.k, p.k * p.n, p.m * p.n]
        let bytes = [2, 2, p.outputType.byteCount]
        let buffers = try zip(sizes, bytes).map { try allocator.allocate(bytes: $0 * $1, stream: stream.allocatorKey) }
        // The bias (forward: N values of the output type) or bias gradient (wgrad: M values in fp32).
        let bias = p.epilogue == .none ? nil : try allocator.allocate(bytes: max(p.m, p.n) * 4, stream: stream.allocatorKey)
        defer { (buffers + (bias.map { [$0] } ?? [])).forEach(allocator.free) }
        // Random inputs: zeros run faster than real data on tensor cores.
        for (index, (buffer, count)) in zip(buffers, sizes).enumerated() where bytes[index] == 2 {
            try kernels.uniform(buffer.address, count: count, seed: UInt64(index + 1), low: -1, high: 1,
                                type: .bfloat16, stream: stream)
        }
        if p.outputType == .float32 { try kernels.fill(buffers[2].address, count: sizes[2], value: 0, type: .float32, stream: stream) }
        let run = {
            try gemm.run(p, a: buffers[0].address, b: buffers[1].address, d: buffers[2].address,
                         beta: shape.accumulates ? 1 : 0, bias: bias?.address ?? 0, stream: stream)
        }
        let begin = try CUDAEvent(device: stream.device), end = try CUDAEvent(device: stream.device)
        func timed(_ runs: Int) throws -> Double {
            try begin.record(on: stream)
            for _ in 0..<runs { try run() }
            try end.record(on: stream)
            try end.synchronize()
            return try end.elapsedMilliseconds(since: begin) / Double(runs)
        }
        let single = max(try timed(3), 1e-3)    // also plans (and autotunes) the problem
        _ = try timed(Int((warmupMs / single).rounded(.up)))
        let iterations = max(5, Int((trialMs / single).rounded(.up)))
        let samples = try (0..<trials).map { _ in try timed(iterations) }
        return samples.sorted()[samples.count / 2]
    }
}

/// One benchmarked product: a linear layer's forward, dgrad or wgrad GEMM.
struct GemmBenchShape {
    var name: String
    var problem: GemmProblem
    /// D += product (beta 1), as gradient-accumulation fusion adds a wgrad into the fp32 main grad.
    var accumulates = false

    /// The product as a training step runs it: the forward adds the bias in its epilogue; the wgrad
    /// accumulates into fp32 and sums the bias gradient in its epilogue (dgrad is unchanged). The
    /// logits layer has no bias, and its weight, tied to the embedding, takes a plain bf16 wgrad.
    var asInTraining: GemmBenchShape {
        var shape = self
        guard !name.hasPrefix("logits") else { return shape }
        if name.hasSuffix(".fwd") { shape.problem.epilogue = .bias }
        if name.hasSuffix(".wgrad") {
            (shape.problem.outputType, shape.problem.epilogue, shape.accumulates) = (.float32, .biasGradientFromA, true)
        }
        return shape
    }

    /// Forward Y[T,out] = X[T,in]·Wᵀ, dgrad dX[T,in] = dY·W, wgrad dW[out,in] = dYᵀ·X, for the
    /// QKV projection, both MLP layers and the output (logits) layer of a GPT model.
    static func gptTraining(tokens: Int, hidden: Int, ffn: Int, vocab: Int) -> [GemmBenchShape] {
        let layers = [("qkv", hidden, 3 * hidden), ("fc1", hidden, ffn), ("fc2", ffn, hidden), ("logits", hidden, vocab)]
        return layers.flatMap { name, inFeatures, outFeatures in
            [
                GemmBenchShape(name: "\(name).fwd", problem: GemmProblem(m: tokens, n: outFeatures, k: inFeatures, transposeB: true)),
                GemmBenchShape(name: "\(name).dgrad", problem: GemmProblem(m: tokens, n: inFeatures, k: outFeatures)),
                GemmBenchShape(name: "\(name).wgrad", problem: GemmProblem(m: outFeatures, n: inFeatures, k: tokens, transposeA: true)),
            ]
        }
    }
}
