import XCTest
@testable import MegatronCUDA
@testable import MegatronTensor
import MegatronTestSupport

/// The flash-attention kernels (through `Ops.attention`) against the CPU reference, on the same
/// bf16 / fp16 inputs, for head dims from 16 to 256 and with dropout (our kernels draw the reference's
/// Philox mask bit for bit, so a dropped element the reference keeps would show as an O(1) error). The kernels round P and dS to the input type before their tensor-core
/// products (as FlashAttention does), so results differ from the fp32 reference by a few units in
/// the 16-bit type's last place; errors are measured as ‖gpu − cpu‖ / ‖cpu‖ over each tensor.
final class AttentionGPUTests: XCTestCase {
    struct Case {
        var batch = 1
        var groups = 1
        var perGroup = 1
        var queries: Int
        var keys: Int? = nil
        var headDim = 64
        var dtype: DType = .bfloat16
        var causal = true
        var dropout: Float = 0
    }

    func device() throws -> Device { try requireGPU("flash-attention parity tests") }

    static func rmsError(_ gpu: Tensor, _ cpu: Tensor) -> Double {
        let squares = zip(gpu.floats(), cpu.floats()).map { Double($0 - $1) * Double($0 - $1) }
        return (squares.reduce(0, +) / Double(max(cpu.count, 1))).squareRoot()
    }

    /// Forward, then backward, on both devices; every output within `bound` (relative) of the CPU's.
    func check(_ c: Case, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let gpu = try device()
        let (t, heads) = (c.keys ?? c.queries, c.groups * c.perGroup)
        let scale = 1 / Float(c.headDim).squareRoot()
        let q = Tensor.normal([c.batch, heads, c.queries, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed))
        let k = Tensor.normal([c.batch, c.groups, t, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 1))
        let v = Tensor.normal([c.batch, c.groups, t, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 2))
        let dO = Tensor.normal([c.batch, heads, c.queries, c.headDim], dtype: c.dtype, generator: PhiloxGenerator(seed: seed + 3))
        let (qd, kd, vd, gd) = (q.to(gpu), k.to(gpu), v.to(gpu), dO.to(gpu))
        XCTAssertTrue(Ops.attentionIsFused(q: qd, k: kd, v: vd), "\(c) runs the fused kernels", file: file, line: line)

        let dropout = c.dropout > 0 ? AttentionDropout(probability: c.dropout, seed: seed &+ 40, offset: 3) : nil
        let reference = Ops.attention(q: q, k: k, v: v, causal: c.causal, scale: scale, dropout: dropout)
        let referenceGrads = Ops.attentionBackward(gradOutput: dO, q: q, k: k, v: v, output: reference.output,
                                                   logSumExp: reference.logSumExp, causal: c.causal, scale: scale, dropout: dropout)
        // Our kernels, then whatever the default picks (cuDNN where it loads; its dropout mask is its own,
        // CuDNNAttentionGPUTests checks it).
        for backend in dropout == nil ? [AttentionBackend.kernels, .auto] : [.kernels] {
            let layout = AttentionLayout(q: qd, k: kd, v: vd)
            let fused = try XCTUnwrap(CUDAAttention.forward(q: qd, k: kd, v: vd, layout: layout, causal: c.causal, scale: scale,
                                                            dropout: dropout, backend: backend), file: file, line: line)
            let fusedGrads = try XCTUnwrap(CUDAAttention.backward(gradOutput: gd, q: qd, k: kd, v: vd, output: fused.output,
                                                                  logSumExp: fused.logSumExp, layout: layout, causal: c.causal,
                                                                  scale: scale, dropout: dropout, backend: backend),
                                           file: file, line: line)
            Self.compare(c, backend, (fused.output, fused.logSumExp, fusedGrads.gradQ, fusedGrads.gradK, fusedGrads.gradV),
                    (reference.output, reference.logSumExp, referenceGrads.gradQ, referenceGrads.gradK, referenceGrads.gradV),
                    file: file, line: line)
        }
    }

    /// Output, log-sum-exp and the three gradients of `gpu` within a few 16-bit ulps of `cpu` (relative).
    static func compare(_ c: Case, _ backend: AttentionBackend, _ gpu: (Tensor, Tensor, Tensor, Tensor, Tensor),
                 _ cpu: (Tensor, Tensor, Tensor, Tensor, Tensor), file: StaticString, line: UInt) {
        let (t, heads) = (c.keys ?? c.queries, c.groups * c.perGroup)
        let unit: Double = c.dtype == .bfloat16 ? 1.0 / 256 : 1.0 / 2048   // one ulp at 1 (2^-8, 2^-11)
        let checks: [(String, Tensor, Tensor, Double)] = [
            ("output", gpu.0, cpu.0, 2 * unit),
            ("logSumExp", gpu.1, cpu.1, 1e-4),
            ("dq", gpu.2, cpu.2, 4 * unit),
            ("dk", gpu.3, cpu.3, 4 * unit),
            ("dv", gpu.4, cpu.4, 4 * unit),
        ]
        for (name, g, r, bound) in checks {
            XCTAssertEqual(g.shape, r.shape, "\(name) shape", file: file, line: line)
            XCTAssertFalse(g.floats().contains { !$0.isFinite }, "\(name) finite in \(c)", file: file, line: line)
            // With one key, dq and dk are zero in exact arithmetic (P = 1, so dP = D): measure them
            // against the gradient scale of one (absolute RMS error) instead of their rounding noise.
            let tiny = r.floats().allSatisfy { abs($0) < 1e-3 }
            let error = tiny ? rmsError(g, r) : relativeError(g, r)
            print("flash attention (\(backend)) \(c.dtype) d\(c.headDim) b\(c.batch) \(heads)/\(c.groups) heads s\(c.queries) t\(t) causal \(c.causal) dropout \(c.dropout): \(name) relative error \(error)")
            XCTAssertLessThan(error, bound, "\(name) of \(c) on \(backend)", file: file, line: line)
        }
    }

    func testGroupedQueryCausalOddLengths() throws {
        try check(Case(batch: 2, groups: 2, perGroup: 4, queries: 77))
        try check(Case(groups: 2, perGroup: 4, queries: 200, headDim: 128, dtype: .float16))
        try check(Case(groups: 2, perGroup: 4, queries: 1, headDim: 128))
        try check(Case(batch: 2, groups: 2, perGroup: 4, queries: 77, dtype: .float16))
    }

    func testNonCausalAndCachedKeys() throws {
        try check(Case(groups: 2, perGroup: 2, queries: 77, headDim: 128, causal: false))
        try check(Case(groups: 2, perGroup: 2, queries: 130, dtype: .float16, causal: false))
        // Five new queries after 72 cached positions, as in generation with a KV cache.
        try check(Case(groups: 2, perGroup: 3, queries: 5, keys: 77))
        try check(Case(groups: 1, perGroup: 2, queries: 1, keys: 200, headDim: 128, dtype: .float16))
    }

    /// Head dims past 64 and 128: a multiple of 16 (80, 96), one that is not (72: the kernels pad to 80),
    /// the smallest tile (16) and the largest (256).
    func testHeadDimsUpTo256() throws {
        try check(Case(batch: 2, groups: 2, perGroup: 2, queries: 77, headDim: 80))
        try check(Case(groups: 1, perGroup: 3, queries: 130, headDim: 96, dtype: .float16))
        try check(Case(groups: 2, perGroup: 2, queries: 70, headDim: 72))
        try check(Case(groups: 2, perGroup: 1, queries: 33, headDim: 16, causal: false))
        try check(Case(groups: 1, perGroup: 2, queries: 96, headDim: 256))
    }

    /// Dropout with the reference's mask: sequence lengths that are multiples of 4 (lanes share each
    /// Philox block) and ones that are not (each probability draws its own), causal and not, GQA.
    func testDropoutDrawsTheReferenceMask() throws {
        try check(Case(batch: 2, groups: 2, perGroup: 2, queries: 128, dropout: 0.1))
        try check(Case(groups: 2, perGroup: 3, queries: 77, headDim: 80, dropout: 0.2))
        try check(Case(groups: 1, perGroup: 2, queries: 64, headDim: 128, dtype: .float16, causal: false, dropout: 0.3))
        try check(Case(groups: 1, perGroup: 1, queries: 66, keys: 66, headDim: 96, dropout: 0.1))
    }

    /// With dropout, the deterministic backward (dQ per query block, its mask drawn in the query
    /// orientation) and the atomic one (dQ from the key blocks, drawn transposed) agree.
    func testDropoutBackwardAgreesBetweenDQModes() throws {
        let gpu = try device()
        let (b, g, p, s, d) = (1, 2, 2, 100, 64)
        let q = Tensor.normal([b, g * p, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 30)).to(gpu)
        let k = Tensor.normal([b, g, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 31)).to(gpu)
        let v = Tensor.normal([b, g, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 32)).to(gpu)
        let dO = Tensor.normal([b, g * p, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 33)).to(gpu)
        let layout = AttentionLayout(q: q, k: k, v: v), dropout = AttentionDropout(probability: 0.15, seed: 8, offset: 2)
        let forward = try XCTUnwrap(CUDAAttention.forward(q: q, k: k, v: v, layout: layout, causal: true, scale: 0.125,
                                                          dropout: dropout, backend: .kernels))
        func grads(deterministic: Bool) throws -> [Tensor] {
            let r = try XCTUnwrap(CUDAAttention.backward(gradOutput: dO, q: q, k: k, v: v, output: forward.output,
                                                         logSumExp: forward.logSumExp, layout: layout, causal: true, scale: 0.125,
                                                         dropout: dropout, deterministic: deterministic, backend: .kernels))
            return [r.gradQ, r.gradK, r.gradV]
        }
        let ordered = try grads(deterministic: true), atomic = try grads(deterministic: false)
        for (name, x, y) in zip3(["dq", "dk", "dv"], atomic, ordered) {
            XCTAssertLessThan(relativeError(x, y), 1.0 / 256, "atomic-dQ backward \(name) with dropout against the ordered one")
        }
    }

    func testLongSequences() throws {
        try check(Case(groups: 1, perGroup: 2, queries: 1024))
        try check(Case(groups: 1, perGroup: 1, queries: 2048, headDim: 128))
        try check(Case(groups: 1, perGroup: 1, queries: 2048, dtype: .float16))
    }

    /// Views sliced out of a fused QKV projection ([b, s, groups, perGroup + 2, d], permuted) need
    /// no copy and give the contiguous inputs' results; their gradients come back as the same views of
    /// one buffer. The deterministic backward is run-to-run identical; the atomic-dQ one agrees with it.
    func testStridedQKVViewsAndDeterministicBackward() throws {
        let gpu = try device()
        let (b, s, g, p, d) = (2, 96, 2, 3, 64)
        let qkv = Tensor.normal([b, s, g, p + 2, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 9)).to(gpu)
            .permuted([0, 2, 3, 1, 4])
        let q = qkv.narrowed(2, start: 0, length: p), k = qkv.narrowed(2, start: p, length: 1), v = qkv.narrowed(2, start: p + 1, length: 1)
        XCTAssertTrue(Ops.attentionIsFused(q: q, k: k, v: v))
        // Our kernels (bit-for-bit claims below are theirs; cuDNN picks engines by stride).
        func forward(_ q: Tensor, _ k: Tensor, _ v: Tensor) throws -> (output: Tensor, logSumExp: Tensor) {
            try XCTUnwrap(CUDAAttention.forward(q: q, k: k, v: v, layout: AttentionLayout(q: q, k: k, v: v), causal: true,
                                                scale: 0.125, backend: .kernels))
        }
        let strided = try forward(q, k, v)
        let copied = try forward(q.madeContiguous(), k.madeContiguous(), v.madeContiguous())
        XCTAssertEqual(strided.output.floats(), copied.output.floats())
        XCTAssertEqual(strided.output.shape, [b, g, p, s, d])

        let dO = Tensor.normal([b, g, p, s, d], dtype: .bfloat16, generator: PhiloxGenerator(seed: 10)).to(gpu)
        func grads(deterministic: Bool) throws -> [Tensor] {
            let r = try XCTUnwrap(CUDAAttention.backward(gradOutput: dO, q: q, k: k, v: v, output: strided.output,
                                                         logSumExp: strided.logSumExp, layout: AttentionLayout(q: q, k: k, v: v),
                                                         causal: true, scale: 0.125, deterministic: deterministic,
                                                         backend: .kernels))
            return [r.gradQ, r.gradK, r.gradV]
        }
        let ordered = try grads(deterministic: true), atomic = try grads(deterministic: false)
        XCTAssertEqual(ordered.map { $0.floats() }, try grads(deterministic: true).map { $0.floats() }, "the backward is deterministic")
        for (name, x, y) in zip3(["dq", "dk", "dv"], atomic, ordered) {
            XCTAssertLessThan(relativeError(x, y), 1.0 / 256, "atomic-dQ backward \(name) against the ordered one")
        }
        XCTAssertEqual(atomic[1].floats(), ordered[1].floats(), "dK does not depend on how dQ is summed")
        for g in atomic {
            XCTAssertTrue(g.storage === atomic[0].storage, "q, k, v gradients share one buffer like q, k, v")
            XCTAssertEqual(g.storage.byteCount, qkv.storage.byteCount)
        }
        let projection = Tensor(storage: atomic[0].storage, shape: [b, s, g, p + 2, d], strides: Shape.contiguousStrides([b, s, g, p + 2, d]),
                                dtype: .bfloat16)
        XCTAssertEqual(projection.permuted([0, 2, 3, 1, 4]).narrowed(2, start: p + 1, length: 1).floats(), atomic[2].floats())
        let cpu = Ops.attention(q: q.to(.cpu), k: k.to(.cpu), v: v.to(.cpu), causal: true, scale: 0.125)
        XCTAssertLessThan(relativeError(strided.output, cpu.output), 2.0 / 256)
    }

    func testUnsupportedProblemsFallBack() throws {
        let gpu = try device()
        let q = Tensor.normal([1, 2, 9, 36], dtype: .bfloat16, generator: PhiloxGenerator(seed: 11)).to(gpu)
        let k = Tensor.normal([1, 1, 9, 36], dtype: .bfloat16, generator: PhiloxGenerator(seed: 12)).to(gpu)
        XCTAssertFalse(Ops.attentionIsFused(q: q, k: k, v: k), "head dim 36 (not a multiple of 8) is not fused")
        XCTAssertFalse(Ops.attentionIsFused(q: q.cast(to: .float32), k: k.cast(to: .float32), v: k.cast(to: .float32)))
        // Still correct, through the CPU reference.
        let r = Ops.attention(q: q, k: k, v: k, causal: true, scale: 0.2)
        let cpu = Ops.attention(q: q.to(.cpu), k: k.to(.cpu), v: k.to(.cpu), causal: true, scale: 0.2)
        XCTAssertEqual(r.output.floats(), cpu.output.floats())
        XCTAssertEqual(r.output.device, gpu)
    }
}

private func zip3<A, B, C>(_ a: [A], _ b: [B], _ c: [C]) -> [(A, B, C)] {
    zip(a, zip(b, c)).map { ($0, $1.0, $1.1) }
}
