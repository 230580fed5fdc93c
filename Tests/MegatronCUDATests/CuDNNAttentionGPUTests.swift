import XCTest
@testable import MegatronCUDA
@testable import MegatronTensor

/// cuDNN's fused SDPA (CUDAAttention with the `.cudnn` backend) against the CPU reference
/// Ops.attention / attentionBackward on the same bf16 / fp16 inputs, with AttentionGPUTests'
/// relative-error bounds. Skips with a message without a GPU or without a loadable cuDNN 9
/// (set MEGATRON_CUDNN_PATH to torch's site-packages/nvidia/cudnn/lib/libcudnn.so.9).
final class CuDNNAttentionGPUTests: XCTestCase {
    typealias Case = AttentionGPUTests.Case

    func context() throws -> CUDAContext {
        let context: CUDAContext
        do {
            context = try CUDAContext.shared(ordinal: 0)
        } catch {
            throw XCTSkip("no usable CUDA device here, cuDNN attention tests skipped: \(error)")
        }
        do {
            let cudnn = try context.cudnnAttention()
            print("cuDNN \(cudnn.version)")
        } catch {
            throw XCTSkip("cuDNN 9 not loadable, cuDNN attention tests skipped: \(error)")
        }
        return context
    }

    func check(_ c: Case, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let context = try context()
        let gpu = Device.cuda(0)
        let (t, heads) = (c.keys ?? c.queries, c.groups * c.perGroup)
        let scale = 1 / Float(c.headDim).squareRoot()
        // [b, s, h, d] in memory as the model lays them out, seen as [b, h, s, d].
        let q = Tensor.normal([c.batch, c.queries, heads, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed)).permuted([0, 2, 1, 3])
        let k = Tensor.normal([c.batch, t, c.groups, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 1)).permuted([0, 2, 1, 3])
        let v = Tensor.normal([c.batch, t, c.groups, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 2)).permuted([0, 2, 1, 3])
        let dO = Tensor.normal([c.batch, heads, c.queries, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 3))
        let (qd, kd, vd, gd) = (q.to(gpu), k.to(gpu), v.to(gpu), dO.to(gpu))
        let layout = AttentionLayout(q: qd, k: kd, v: vd)

        let reference = Ops.attention(q: q, k: k, v: v, causal: c.causal, scale: scale)
        let fused = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: vd, layout: layout, causal: c.causal, scale: scale,
                                                        backend: .cudnn), file: file, line: line)
        let referenceGrads = Ops.attentionBackward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                                   logSumExp: reference.logSumExp, causal: c.causal, scale: scale)
        let fusedGrads = try XCTUnwrap(CUDAAttention.backward(gradOutput: gd, q: qd, k: kd, v: vd, output: fused.output,
                                                              logSumExp: fused.logSumExp, layout: layout, causal: c.causal,
                                                              scale: scale, backend: .cudnn), file: file, line: line)
        let failures = try context.cudnnAttention().planFailures
        XCTAssertEqual(failures, [], "cuDNN took every shape (else our kernels ran)", file: file, line: line)
        // Shapes with several engine configs ran the fastest after timing each; the results below are the chosen one's.
        for timing in try context.cudnnAttention().planTimings {
            XCTAssertEqual(timing.filter { $0 == "*" }.count, 1, "one config chosen: \(timing)", file: file, line: line)
            print("cuDNN engine configs, \(timing)")
        }

        AttentionGPUTests.compare(c, .cudnn, (fused.output, fused.logSumExp, fusedGrads.gradQ, fusedGrads.gradK, fusedGrads.gradV),
                                  (reference.output, reference.logSumExp, referenceGrads.gradQ, referenceGrads.gradK, referenceGrads.gradV),
                                  file: file, line: line)
    }

    func testCausalGroupedQuery() throws {
        try check(Case(batch: 2, groups: 2, perGroup: 4, queries: 128))
        try check(Case(groups: 2, perGroup: 4, queries: 200, headDim: 128, dtype: .float16))
        try check(Case(batch: 2, groups: 2, perGroup: 4, queries: 77))
    }

    func testNonCausalAndMultiHead() throws {
        try check(Case(groups: 4, perGroup: 1, queries: 128, headDim: 128, causal: false))
        try check(Case(batch: 2, groups: 2, perGroup: 2, queries: 96, dtype: .float16, causal: false))
    }

    /// Queries after cached keys: the bottom-right diagonal shift in the mask.
    func testCausalWithCachedKeys() throws {
        try check(Case(groups: 2, perGroup: 3, queries: 64, keys: 192))
    }

    func testLongSequence() throws {
        try check(Case(groups: 1, perGroup: 2, queries: 1024, headDim: 128))
    }

    /// Head dims other than 64 and 128 run on cuDNN too (GPT-3 2.7B's 80, 96), not on our kernels.
    func testHeadDims80And96() throws {
        try check(Case(batch: 2, groups: 2, perGroup: 2, queries: 128, headDim: 80))
        try check(Case(groups: 2, perGroup: 1, queries: 96, headDim: 96, dtype: .float16))
    }

    /// cuDNN draws its dropout mask from its own generator, so it cannot equal the reference's bit for
    /// bit. With V the identity (keys = head dim) the output is the dropped probabilities themselves,
    /// which reveals the mask: about 1 - p of the visible probabilities kept; then, with a real V and the
    /// same seed and offset, forward and backward match the CPU reference under that mask.
    func testDropoutMaskRevealedThenMatchedByTheReference() throws {
        let context = try context()
        let gpu = Device.cuda(0)
        let (b, groups, perGroup, s, d) = (2, 2, 2, 64, 64)
        let heads = groups * perGroup, p: Float = 0.2, scale = 1 / Float(d).squareRoot()
        let dropout = AttentionDropout(probability: p, seed: 1234, offset: 7)
        func normal(_ shape: [Int], _ seed: UInt64) -> Tensor {
            Tensor.normal(shape, dtype: .bfloat16, generator: PhiloxGenerator(seed: seed)).permuted([0, 2, 1, 3])
        }
        let q = normal([b, s, heads, d], 50), k = normal([b, s, groups, d], 51), v = normal([b, s, groups, d], 52)
        let identity = Tensor(shape: [b, s, groups, d], values: (0..<(b * s * groups * d)).map { index in
            index % d == (index / (d * groups)) % s ? 1 : 0
        }, dtype: .bfloat16).permuted([0, 2, 1, 3])
        let (qd, kd) = (q.to(gpu), k.to(gpu))
        let layout = AttentionLayout(q: qd, k: kd, v: kd)
        let probe = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: identity.to(gpu), layout: layout, causal: true,
                                                        scale: scale, dropout: dropout, backend: .cudnn))
        // probe[b, h, i, c] is the dropped probability of key c: its index is the mask index.
        let kept = probe.output.floats().map { $0 != 0 }
        let visible = (0..<kept.count).filter { $0 % s <= ($0 / s) % s }
        let fraction = Double(visible.filter { kept[$0] }.count) / Double(visible.count)
        print("cuDNN dropout p \(p): kept \(fraction) of \(visible.count) visible probabilities")
        XCTAssertEqual(fraction, Double(1 - p), accuracy: 0.015, "cuDNN keeps 1 - p of the probabilities")

        let reference = Ops.attention(q: q, k: k, v: v, causal: true, scale: scale,
                                      dropout: AttentionDropout(probability: p, keeping: kept))
        let dO = Tensor.normal([b, heads, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 53))
        let referenceGrads = Ops.attentionBackward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                                   logSumExp: reference.logSumExp, causal: true, scale: scale,
                                                   dropout: AttentionDropout(probability: p, keeping: kept))
        let vd = v.to(gpu)
        let fused = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: vd, layout: layout, causal: true, scale: scale,
                                                        dropout: dropout, backend: .cudnn))
        let grads = try XCTUnwrap(CUDAAttention.backward(gradOutput: dO.to(gpu), q: qd, k: kd, v: vd, output: fused.output,
                                                         logSumExp: fused.logSumExp, layout: layout, causal: true, scale: scale,
                                                         dropout: dropout, backend: .cudnn))
        AttentionGPUTests.compare(Case(batch: b, groups: groups, perGroup: perGroup, queries: s, dropout: p), .cudnn,
                                  (fused.output, fused.logSumExp, grads.gradQ, grads.gradK, grads.gradV),
                                  (reference.output, reference.logSumExp, referenceGrads.gradQ, referenceGrads.gradK, referenceGrads.gradV),
                                  file: #filePath, line: #line)
        XCTAssertEqual(try context.cudnnAttention().planFailures, [], "cuDNN took both directions (else our kernels ran)")
        // Another draw drops other elements.
        let other = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: identity.to(gpu), layout: layout, causal: true, scale: scale,
                                                        dropout: AttentionDropout(probability: p, seed: 1234, offset: 8), backend: .cudnn))
        XCTAssertNotEqual(other.output.floats().map { $0 != 0 }, kept, "offset 8 draws another mask")
    }
}
