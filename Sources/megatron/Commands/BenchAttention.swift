import ArgumentParser
import Foundation
import MegatronCUDA
import MegatronTensor

/// `megatron bench attention`: the flash-attention kernels, forward and forward + backward, bf16,
/// on `batch x heads x seq x headDim` shapes, timed with CUDA events (median of trials). TFLOP/s
/// counts FlashAttention's way: forward 4·b·h·s²·d (halved when causal), backward 2.5 times that.
/// scripts/bench_torch_attention.py times torch's scaled_dot_product_attention on the same shapes.
/// `--backend cudnn` times cuDNN's fused SDPA instead (libcudnn.so.9 on the loader path, or MEGATRON_CUDNN_PATH).
/// `--dropout P` drops the probabilities inside the kernels (as `--attention-dropout P` trains).
struct BenchAttention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Time flash attention forward and forward+backward (ms, TFLOP/s).")

    @Option(help: "CUDA device index (default: LOCAL_RANK, else 0).") var device: Int?
    @Option(help: "Comma-separated shapes BxHxSxD (batch x query heads x sequence x head dim).")
    var shapes = "16x12x1024x64,4x16x2048x128"
    @Option(help: "Key/value heads (grouped-query attention); default: as many as query heads.") var kvHeads: Int?
    @Flag(help: "Attend to every key (default: causal).") var full = false
    @Flag(help: "Time the deterministic backward (dQ per query block, no atomics), as MEGATRON_DETERMINISTIC=1 runs it.")
    var deterministic = false
    @Option(help: "kernels (ours) or cudnn (cuDNN's fused SDPA; its backward ignores --deterministic).")
    var backend = "kernels"
    @Option(help: "Dropout probability on the attention probabilities, inside the kernels.") var dropout: Float = 0
    @Option(help: "Untimed warm-up per case, in milliseconds.") var warmupMs = 200.0
    @Option(help: "Length of each timed trial, in milliseconds (at least 5 runs).") var trialMs = 50.0
    @Option(help: "Timed trials per case; the median is reported.") var trials = 5

    func run() throws {
        // The GPU context training uses: its stream, allocator and kernel catalog.
        let context = try CUDAContext.shared(ordinal: try CUDADevice.ordinal(index: device, environment: ProcessInfo.processInfo.environment))
        let (gpu, stream, allocator, kernels) = (context.device, context.stream, context.allocator, context.kernels)
        guard ["kernels", "cudnn"].contains(backend) else { throw ValidationError("--backend is kernels or cudnn, got '\(backend)'") }
        guard (0..<1).contains(dropout) else { throw ValidationError("--dropout must lie in [0, 1), got \(dropout)") }
        let cudnn = backend == "cudnn" ? try CuDNNAttention(device: gpu, allocator: allocator) : nil
        print("device \(gpu.ordinal): \(gpu.properties.name), \(gpu.properties.multiprocessorCount) SMs; bf16, "
              + (full ? "full" : "causal") + " attention; " + (cudnn.map { "cuDNN \($0.version)" } ?? "our kernels")
              + (dropout > 0 ? "; dropout \(dropout)" : ""))
        print("shape (b x h x s x d)      kv   fwd ms  fwd TFLOP/s  fwd+bwd ms  fwd+bwd TFLOP/s")
        for text in shapes.split(separator: ",") {
            let dims = text.split(separator: "x").compactMap { Int($0) }
            guard dims.count == 4, dims.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--shapes wants BxHxSxD items, got '\(text)'")
            }
            let (b, h, s, d) = (dims[0], dims[1], dims[2], dims[3])
            let kv = kvHeads ?? h
            guard h % kv == 0 else { throw ValidationError("\(h) heads are not a multiple of --kv-heads \(kv)") }
            let problem = AttentionProblem(batch: b, groups: kv, perGroup: h / kv, queries: s, keys: s, headDim: d,
                                           causal: !full, scale: 1 / Float(d).squareRoot(),
                                           dropout: dropout > 0 ? DropoutDraw(probability: dropout, seed: 1, offset: 0) : nil)
            var seed: UInt64 = 0
            func buffer(_ count: Int, _ type: KernelElementType = .bfloat16) throws -> DeviceAllocation {
                let allocation = try allocator.allocate(bytes: count * type.byteCount, stream: stream.allocatorKey)
                seed += 1
                if type == .bfloat16 {
                    try kernels.uniform(allocation.address, count: count, seed: seed, low: -1, high: 1, type: type, stream: stream)
                }
                return allocation
            }
            let qCount = b * h * s * d, kvCount = b * kv * s * d, rows = b * h * s
            let q = try buffer(qCount), k = try buffer(kvCount), v = try buffer(kvCount), o = try buffer(qCount)
            let dO = try buffer(qCount), dq = try buffer(qCount), dk = try buffer(kvCount), dv = try buffer(kvCount)
            let lse = try buffer(rows, .float32), delta = try buffer(rows, .float32), dqSum = try buffer(qCount, .float32)
            // q, o, dO as [b, s, h, d] (the model's layout); k, v as [b, s, kv, d].
            func queryOperand(_ a: DeviceAllocation) -> AttentionOperand {
                AttentionOperand(address: a.address, batchStride: s * h * d, groupStride: (h / kv) * d, headStride: d, rowStride: h * d)
            }
            func keyOperand(_ a: DeviceAllocation) -> AttentionOperand {
                AttentionOperand(address: a.address, batchStride: s * kv * d, groupStride: d, rowStride: kv * d)
            }
            func forward() throws {
                if let cudnn {
                    return try cudnn.attentionForwardCuDNN(output: queryOperand(o), logSumExp: lse.address, q: queryOperand(q),
                                                           k: keyOperand(k), v: keyOperand(v), problem: problem, type: .bfloat16,
                                                           stream: stream)
                }
                try kernels.attentionForward(output: queryOperand(o), logSumExp: lse.address, q: queryOperand(q), k: keyOperand(k),
                                        v: keyOperand(v), problem: problem, type: .bfloat16, stream: stream)
            }
            func backward() throws {
                if let cudnn {
                    return try cudnn.attentionBackwardCuDNN(gradQ: queryOperand(dq), gradK: keyOperand(dk), gradV: keyOperand(dv),
                                                            gradient: queryOperand(dO), output: queryOperand(o), logSumExp: lse.address,
                                                            q: queryOperand(q), k: keyOperand(k), v: keyOperand(v), problem: problem,
                                                            type: .bfloat16, stream: stream)
                }
                if !deterministic { try gpu.zero(dqSum.address, bytes: qCount * 4, stream: stream) }
                try kernels.attentionBackward(gradQ: queryOperand(dq), gradK: keyOperand(dk), gradV: keyOperand(dv), delta: delta.address,
                                         dqAccumulator: deterministic ? nil : dqSum.address,
                                         gradient: queryOperand(dO), output: queryOperand(o), logSumExp: lse.address,
                                         q: queryOperand(q), k: keyOperand(k), v: keyOperand(v), problem: problem,
                                         type: .bfloat16, stream: stream)
            }
            let forwardMs = try time(stream: stream, device: gpu) { try forward() }
            let bothMs = try time(stream: stream, device: gpu) { try forward(); try backward() }
            let flops = 4.0 * Double(b * h) * Double(s) * Double(s) * Double(d) * (full ? 1 : 0.5)
            print("\(b)x\(h)x\(s)x\(d)".padding(toLength: 26, withPad: " ", startingAt: 0)
                  + String(format: "%3d %8.3f %12.1f %11.3f %16.1f", kv, forwardMs, flops / forwardMs / 1e9, bothMs,
                           3.5 * flops / bothMs / 1e9))
            try stream.synchronize()
            [q, k, v, o, dO, dq, dk, dv, lse, delta, dqSum].forEach(allocator.free)
        }
        for timing in cudnn?.planTimings ?? [] { print("cuDNN engine configs, " + timing) }
    }

    /// Median milliseconds per call of `body` over `trials` trials of about `trialMs` each.
    private func time(stream: CUDAStream, device: CUDADevice, _ body: () throws -> Void) throws -> Double {
        try medianMilliseconds(stream: stream, device: device, warmupMs: warmupMs, trialMs: trialMs, trials: trials, body)
    }
}
