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
}
