import XCTest
@testable import MegatronCUDA
@testable import MegatronTensor
import MegatronTestSupport

/// gpt-oss's attention on the fused kernels (our flash attention; cuDNN's graph here has neither feature, so
/// `.auto` must come to the same kernels): sliding windows narrower and wider than a key block, at and past the
/// sequence's ends, with cached keys; sink logits; both with dropout and with either dQ mode. Output,
/// log-sum-exp, dQ, dK, dV and the sinks' gradient against the CPU reference on the same 16-bit inputs.
final class AttentionMaskingGPUTests: XCTestCase {
    struct Case {
        var shape: AttentionGPUTests.Case
        var window: Int?
        var sinks = true
    }

    func check(_ c: Case, seed: UInt64 = 11, file: StaticString = #filePath, line: UInt = #line) throws {
        let gpu: Device
        do {
            _ = try CUDAContext.shared(ordinal: 0)
            gpu = .cuda(0)
        } catch {
            throw XCTSkip("no usable CUDA device here, sliding-window / sink attention GPU tests skipped: \(error)")
        }
        let s = c.shape, (t, heads) = (s.keys ?? s.queries, s.groups * s.perGroup)
        let scale = 1 / Float(s.headDim).squareRoot()
        let q = Tensor.normal([s.batch, heads, s.queries, s.headDim], dtype: s.dtype, generator: PhiloxGenerator(seed: seed))
        let k = Tensor.normal([s.batch, s.groups, t, s.headDim], dtype: s.dtype, generator: PhiloxGenerator(seed: seed + 1))
        let v = Tensor.normal([s.batch, s.groups, t, s.headDim], dtype: s.dtype, generator: PhiloxGenerator(seed: seed + 2))
        let dO = Tensor.normal([s.batch, heads, s.queries, s.headDim], dtype: s.dtype, generator: PhiloxGenerator(seed: seed + 3))
        let sinks = c.sinks ? Tensor.normal([heads], std: 2, dtype: .float32, generator: PhiloxGenerator(seed: seed + 4)) : nil
        let masking = AttentionMasking(window: c.window, sinks: sinks)
        let dropout = s.dropout > 0 ? AttentionDropout(probability: s.dropout, seed: seed &+ 40, offset: 3) : nil

        let reference = Ops.attention(q: q, k: k, v: v, causal: true, scale: scale, dropout: dropout, masking: masking)
        let referenceGrads = Ops.attentionBackward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                                   logSumExp: reference.logSumExp, causal: true, scale: scale, dropout: dropout,
                                                   masking: masking)
        let (qd, kd, vd, gd) = (q.to(gpu), k.to(gpu), v.to(gpu), dO.to(gpu))
        let layout = AttentionLayout(q: qd, k: kd, v: vd)
        for (backend, deterministic) in [(AttentionBackend.auto, false), (.kernels, true)] {
            let fused = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: vd, layout: layout, causal: true, scale: scale,
                                                            dropout: dropout, masking: masking.to(gpu), backend: backend),
                                      file: file, line: line)
            let grads = try XCTUnwrap(CUDAAttention.backward(gradOutput: gd, q: qd, k: kd, v: vd, output: fused.output,
                                                             logSumExp: fused.logSumExp, layout: layout, causal: true,
                                                             scale: scale, dropout: dropout, masking: masking.to(gpu),
                                                             deterministic: deterministic, backend: backend),
                                      file: file, line: line)
            AttentionGPUTests.compare(s, backend, (fused.output, fused.logSumExp, grads.gradQ, grads.gradK, grads.gradV),
                                      (reference.output, reference.logSumExp, referenceGrads.gradQ, referenceGrads.gradK,
                                       referenceGrads.gradV), file: file, line: line)
            if let sinks {
                let gpuSink = Ops.attentionSinkGradient(gradOutput: gd, output: fused.output, logSumExp: fused.logSumExp,
                                                        sinks: sinks.to(gpu))
                let cpuSink = Ops.attentionSinkGradient(gradOutput: dO, output: reference.output, logSumExp: reference.logSumExp,
                                                        sinks: sinks)
                let error = relativeError(gpuSink, cpuSink)
                print("sink gradient (\(backend)) window \(String(describing: c.window)) s\(s.queries): relative error \(error)")
                XCTAssertLessThan(error, 1e-2, "sink gradient of \(c)", file: file, line: line)
            }
        }
    }

    func testSlidingWindowWithSinks() throws {
        try check(Case(shape: .init(batch: 2, groups: 2, perGroup: 2, queries: 77), window: 5))
        try check(Case(shape: .init(groups: 2, perGroup: 4, queries: 300, headDim: 128), window: 127))
        try check(Case(shape: .init(batch: 2, queries: 200, headDim: 80, dtype: .float16), window: 37))
    }

    func testWindowEdgesAndCachedKeys() throws {
        try check(Case(shape: .init(queries: 70), window: 0, sinks: false))          // each query sees itself only
        try check(Case(shape: .init(queries: 100), window: 500))                     // wider than the sequence
        try check(Case(shape: .init(groups: 2, queries: 150, keys: 230), window: 20, sinks: false))
        try check(Case(shape: .init(queries: 129, headDim: 256), window: 64))
    }

    func testSinksWithoutWindowAndWithDropout() throws {
        try check(Case(shape: .init(batch: 2, groups: 2, perGroup: 2, queries: 190), window: nil))
        try check(Case(shape: .init(groups: 2, perGroup: 2, queries: 160, dropout: 0.1), window: 33))
    }
}
