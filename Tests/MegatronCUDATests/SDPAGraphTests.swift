import XCTest
@testable import MegatronCUDA

/// The cuDNN SDPA graphs as plain data (no GPU, no cuDNN): which operations, in which order, on
/// which tensors, with which dims, strides, types and virtual flags, for MHA and GQA, causal or not.
/// The expected lists follow cudnn-frontend's expansion of its SDPA nodes for cuDNN 9.
final class SDPAGraphTests: XCTestCase {
    /// q, o, dO, dQ as `[b, s, h, d]` and k, v, dK, dV as `[b, s, kv, d]` in memory (the model's layout),
    /// seen as `[b, head, row, d]`.
    func shape(batch: Int = 2, heads: Int, kvHeads: Int, queries: Int, keys: Int, headDim: Int = 64,
               causal: Bool, type: CuDNNBackend.DataType = .bfloat16, dropout: Float = 0) -> SDPAShape {
        let query = [queries * heads * headDim, headDim, heads * headDim, 1]
        let key = [keys * kvHeads * headDim, headDim, kvHeads * headDim, 1]
        return SDPAShape(batch: batch, heads: heads, kvHeads: kvHeads, queries: queries, keys: keys, headDim: headDim,
                         dataType: type, causal: causal, scale: 0.125, dropout: dropout,
                         strides: [.q: query, .o: query, .dO: query, .dQ: query, .k: key, .v: key, .dK: key, .dV: key])
    }

    func names(_ graph: CuDNNGraphSpec) -> [String] { graph.operations.map(\.name) }

    /// Outputs of the operation named `name`.
    func output(_ graph: CuDNNGraphSpec, _ name: String) throws -> CuDNNGraphSpec.Tensor {
        let op = try XCTUnwrap(graph.operations.first { $0.name == name }, "no operation \(name)")
        return try XCTUnwrap(graph.tensor(op.tensorUIDs.last!))
    }

    /// Every virtual tensor is written once and read; every device or scalar tensor is used; no
    /// input is written.
    func assertWellFormed(_ graph: CuDNNGraphSpec, file: StaticString = #filePath, line: UInt = #line) {
        let written = graph.operations.map { $0.tensorUIDs.last! }
        let read = Set(graph.operations.flatMap { $0.tensorUIDs.dropLast() })
        XCTAssertEqual(written.count, Set(written).count, "each tensor written once", file: file, line: line)
        for tensor in graph.tensors {
            if tensor.isVirtual {
                XCTAssertTrue(written.contains(tensor.uid) && read.contains(tensor.uid), "\(tensor.name) written and read", file: file, line: line)
            } else {
                XCTAssertTrue(written.contains(tensor.uid) || read.contains(tensor.uid), "\(tensor.name) used", file: file, line: line)
            }
            if tensor.scalar != nil {
                XCTAssertEqual(tensor.dims, [1, 1, 1, 1], file: file, line: line)
                XCTAssertFalse(written.contains(tensor.uid), "scalar \(tensor.name) only read", file: file, line: line)
            }
            XCTAssertEqual(tensor.dims.count, 4, "\(tensor.name) is 4-D", file: file, line: line)
        }
        for role in [SDPARole.q, .k, .v, .dO] { XCTAssertFalse(written.contains(role.rawValue), "\(role) is read-only", file: file, line: line) }
    }

    func testForwardNonCausal() throws {
        let s = shape(heads: 4, kvHeads: 4, queries: 128, keys: 128, causal: false)
        let g = SDPAGraphs.forward(s, maskValue: -.infinity)
        assertWellFormed(g)
        XCTAssertEqual(names(g), ["bmm1", "attn_scale", "max", "sub", "exp", "sum", "log", "add", "div", "bmm2"])
        XCTAssertEqual(g.deviceTensors.map(\.uid).sorted(), [1, 2, 3, 4, 5])
        // K enters Q·Kᵀ as [b, kv, d, keys]: its last two dims and strides swapped.
        let k = try XCTUnwrap(g.tensor(SDPARole.k.rawValue))
        XCTAssertEqual(k.dims, [2, 4, 64, 128])
        XCTAssertEqual(k.strides, [128 * 4 * 64, 64, 1, 4 * 64])
        let q = try XCTUnwrap(g.tensor(SDPARole.q.rawValue))
        XCTAssertEqual(q.dims, [2, 4, 128, 64])
        XCTAssertEqual(q.strides, [128 * 4 * 64, 64, 4 * 64, 1])
        XCTAssertEqual(q.dataType, .bfloat16)
        let stats = try XCTUnwrap(g.tensor(SDPARole.stats.rawValue))
        XCTAssertEqual(stats.dims, [2, 4, 128, 1])
        XCTAssertEqual(stats.strides, [512, 128, 1, 1])
        XCTAssertEqual(stats.dataType, .float)
        XCTAssertFalse(stats.isVirtual)
        XCTAssertEqual(try output(g, "add").uid, SDPARole.stats.rawValue, "stats = max + log(sum)")
        XCTAssertEqual(try output(g, "bmm1").dims, [2, 4, 128, 128])
        XCTAssertEqual(try output(g, "bmm1").dataType, .float)
        XCTAssertEqual(try output(g, "max").dims, [2, 4, 128, 1])
        let p = try output(g, "div")
        XCTAssertTrue(p.isVirtual)
        XCTAssertEqual(p.dataType, .bfloat16, "P reaches P·V in the input type")
        XCTAssertEqual(g.operations.last, .matmul(name: "bmm2", a: p.uid, b: SDPARole.v.rawValue, c: SDPARole.o.rawValue))
        XCTAssertEqual(g.scalarTensors.map(\.scalar), [.float(0.125)])
        XCTAssertEqual(g.scalarTensors.first?.uid, SDPAGraphs.scaleUID)
    }

    func testForwardCausalMask() throws {
        let square = SDPAGraphs.forward(shape(heads: 8, kvHeads: 2, queries: 77, keys: 77, causal: true), maskValue: -.infinity)
        assertWellFormed(square)
        XCTAssertEqual(names(square), ["bmm1", "attn_scale", "gen_row_index", "gen_col_index", "row>=col", "binary_select",
                                       "max", "sub", "exp", "sum", "log", "add", "div", "bmm2"])
        let row = try output(square, "gen_row_index"), keep = try output(square, "row>=col")
        XCTAssertEqual(row.dataType, .int32)
        XCTAssertEqual(keep.dataType, .boolean)
        XCTAssertEqual(row.dims, [2, 8, 77, 77])
        guard case .pointwise(_, .generateIndex, _, nil, nil, _, _, 2) = square.operations[2] else {
            return XCTFail("row index along axis 2: \(square.operations[2])")
        }
        guard case .pointwise(_, .binarySelect, let x, let b, let t, _, _, _) = square.operations[5] else {
            return XCTFail("binary select: \(square.operations[5])")
        }
        XCTAssertEqual(x, try output(square, "attn_scale").uid)
        XCTAssertEqual(square.tensor(try XCTUnwrap(b))?.scalar, .float(-.infinity))
        XCTAssertEqual(t, keep.uid)
        XCTAssertNil(square.tensor(SDPAGraphs.keyCountUID), "no shift when queries == keys")

        // Five queries after 72 cached keys: the diagonal moves right by 72 (bottom-right alignment).
        let cached = SDPAGraphs.forward(shape(heads: 6, kvHeads: 2, queries: 5, keys: 77, causal: true), maskValue: -.infinity)
        assertWellFormed(cached)
        XCTAssertEqual(names(cached), ["bmm1", "attn_scale", "gen_row_index", "gen_col_index", "row+skv", "row+skv-sq", "row>=col",
                                       "binary_select", "max", "sub", "exp", "sum", "log", "add", "div", "bmm2"])
        XCTAssertEqual(cached.tensor(SDPAGraphs.keyCountUID)?.scalar, .int32(77))
        XCTAssertEqual(cached.tensor(SDPAGraphs.queryCountUID)?.scalar, .int32(5))
        let shifted = try output(cached, "row+skv-sq")
        XCTAssertEqual(shifted.dataType, .int32)
        guard case .pointwise(_, .compareGreaterEqual, let left, let right, nil, _, .boolean, nil) = cached.operations[6] else {
            return XCTFail("row >= column: \(cached.operations[6])")
        }
        XCTAssertEqual(left, shifted.uid)
        XCTAssertEqual(right, try output(cached, "gen_col_index").uid)
    }

    func testBackwardGroupedQuery() throws {
        let s = shape(heads: 8, kvHeads: 2, queries: 96, keys: 96, headDim: 128, causal: true, type: .half)
        let g = SDPAGraphs.backward(s, maskValue: -.infinity)
        assertWellFormed(g)
        XCTAssertEqual(names(g), ["mul_dO_O", "reduce_dO_o", "scale_dropout_inv", "matmul_Q_KT", "mul_s_attn_scale", "sub_s_m",
                                  "gen_row_index", "gen_col_index", "row>=col", "binary_select", "exp_s", "reshape_p",
                                  "matmul_pT_dO", "red_dV_head", "matmul_dO_VT", "sub_dP_softmax_sum", "mul_dP_exp_s",
                                  "mul_dS_attn_scale", "reshape_dS", "matmul_dST_Q", "red_dK_head", "reshape_k", "matmul_dS_K",
                                  "identity_dQ"])
        XCTAssertEqual(g.deviceTensors.map(\.uid).sorted(), Array(1...11))
        let keyStrides: [Int64] = [96 * 2 * 128, 128, 2 * 128, 1]
        for role in [SDPARole.k, .v] {
            let t = try XCTUnwrap(g.tensor(role.rawValue))
            XCTAssertEqual(t.dims, [2, 2, 128, 96], "\(role) transposed")
            XCTAssertEqual(t.strides, [keyStrides[0], keyStrides[1], 1, keyStrides[2]])
        }
        for role in [SDPARole.dK, .dV] {
            let t = try XCTUnwrap(g.tensor(role.rawValue))
            XCTAssertEqual(t.dims, [2, 2, 96, 128])
            XCTAssertEqual(t.strides, keyStrides)
            XCTAssertEqual(t.dataType, .half)
        }
        // GQA: the full-head products are virtual and summed per group into dK, dV.
        let fullDV = try output(g, "matmul_pT_dO")
        XCTAssertTrue(fullDV.isVirtual)
        XCTAssertEqual(fullDV.dims, [2, 8, 96, 128])
        XCTAssertEqual(g.operations.first { $0.name == "red_dV_head" },
                       .reduction(name: "red_dV_head", op: .add, x: fullDV.uid, y: SDPARole.dV.rawValue))
        let pT = try output(g, "reshape_p")
        XCTAssertEqual(pT.dims, [2, 8, 96, 96])
        XCTAssertEqual(pT.strides, [8 * 96 * 96, 96 * 96, 1, 96])
        XCTAssertEqual(pT.dataType, .half)
        let product = try output(g, "mul_dO_O")
        XCTAssertEqual(product.strides, [8 * 96 * 128, 96 * 128, 8 * 128, 1], "cudnn-frontend's strides for dO ∘ O")
        let sum = try XCTUnwrap(g.tensor(SDPARole.softmaxSum.rawValue))
        XCTAssertEqual(sum.dims, [2, 8, 96, 1])
        XCTAssertEqual(sum.dataType, .float)
        XCTAssertFalse(sum.isVirtual)
        let accumulator = try XCTUnwrap(g.tensor(SDPARole.dQAccumulator.rawValue))
        XCTAssertEqual(accumulator.dims, [2, 8, 96, 128])
        XCTAssertEqual(accumulator.strides, [8 * 96 * 128, 96 * 128, 128, 1])
        XCTAssertEqual(accumulator.dataType, .float)
        let kRows = try output(g, "reshape_k")
        XCTAssertEqual(kRows.dims, [2, 2, 96, 128])
        XCTAssertEqual(kRows.strides, keyStrides)
        XCTAssertEqual(g.operations.last, .pointwise(name: "identity_dQ", mode: .identity, x: accumulator.uid, b: nil, t: nil,
                                                     y: SDPARole.dQ.rawValue, computeType: .float, axis: nil))
        XCTAssertEqual(Set(g.scalarTensors.map(\.uid)), [SDPAGraphs.scaleUID, SDPAGraphs.oneUID, SDPAGraphs.maskValueUID])
    }

    func testBackwardMultiHeadWritesGradientsDirectly() throws {
        let g = SDPAGraphs.backward(shape(heads: 4, kvHeads: 4, queries: 64, keys: 64, causal: false), maskValue: -.infinity)
        assertWellFormed(g)
        XCTAssertFalse(names(g).contains { $0.hasPrefix("red_d") || $0.hasPrefix("gen_") || $0 == "binary_select" })
        XCTAssertEqual(try output(g, "matmul_pT_dO").uid, SDPARole.dV.rawValue)
        XCTAssertEqual(try output(g, "matmul_dST_Q").uid, SDPARole.dK.rawValue)
    }

    func testMaskValueFollowsCuDNNVersion() {
        XCTAssertEqual(SDPAGraphs.maskValue(cudnnVersion: 91900), -.infinity)
        XCTAssertEqual(SDPAGraphs.maskValue(cudnnVersion: 90500), -Float.greatestFiniteMagnitude)
    }

    /// Our operands (`[batch, group, headInGroup, row, dim]`) become cuDNN's `[batch, head, row, dim]`
    /// only when a group's heads follow the previous group's.
    func testOperandsFoldIntoFourDimensions() throws {
        let (b, s, g, p, d) = (2, 64, 2, 3, 64)
        let problem = AttentionProblem(batch: b, groups: g, perGroup: p, queries: s, keys: s, headDim: d, causal: true, scale: 0.125)
        let bshd = AttentionOperand(address: 256, batchStride: s * g * p * d, groupStride: p * d, headStride: d, rowStride: g * p * d)
        let key = AttentionOperand(address: 512, batchStride: s * g * d, groupStride: d, rowStride: g * d)
        let folded = try XCTUnwrap(CuDNNAttention.shape(problem, type: .bfloat16, operands: [.q: bshd, .k: key, .v: key, .o: bshd]))
        XCTAssertEqual(folded.strides[.q], [s * g * p * d, d, g * p * d, 1])
        XCTAssertEqual(folded.strides[.k], [s * g * d, d, g * d, 1])
        XCTAssertEqual(folded.heads, 6)
        XCTAssertEqual(folded.kvHeads, 2)
        XCTAssertEqual(folded.dataType, .bfloat16)

        // A fused QKV projection [b, s, g, p + 2, d]: a group's query heads are followed by its k and v.
        let interleaved = AttentionOperand(address: 256, batchStride: s * g * (p + 2) * d, groupStride: (p + 2) * d,
                                           headStride: d, rowStride: g * (p + 2) * d)
        XCTAssertNil(CuDNNAttention.shape(problem, type: .bfloat16, operands: [.q: interleaved, .k: key, .v: key]))
        var oneHeadPerGroup = problem
        (oneHeadPerGroup.groups, oneHeadPerGroup.perGroup) = (6, 1)
        XCTAssertEqual(CuDNNAttention.shape(oneHeadPerGroup, type: .float16, operands: [.q: interleaved])?.strides[.q],
                       [s * g * (p + 2) * d, (p + 2) * d, g * (p + 2) * d, 1], "one head per group: the group stride is the head stride")
        XCTAssertNil(CuDNNAttention.shape(problem, type: .float32, operands: [.q: bshd]), "fp32 is not taken")
        var d36 = problem
        d36.headDim = 36
        XCTAssertNil(CuDNNAttention.shape(d36, type: .bfloat16, operands: [.q: bshd]), "head dim 36 (not a multiple of 8) is not taken")
        d36.headDim = 264
        XCTAssertNil(CuDNNAttention.shape(d36, type: .bfloat16, operands: [.q: bshd]), "head dim 264 is not taken")
        d36.headDim = 80
        XCTAssertNotNil(CuDNNAttention.shape(d36, type: .bfloat16, operands: [.q: bshd]), "head dim 80 is")
        var dropout = problem
        dropout.dropout = DropoutDraw(probability: 0.1, seed: 1, offset: 2)
        XCTAssertEqual(CuDNNAttention.shape(dropout, type: .bfloat16, operands: [.q: bshd])?.dropout, 0.1)
        dropout.keys = 2 * s
        XCTAssertNil(CuDNNAttention.shape(dropout, type: .bfloat16, operands: [.q: bshd]), "no dropout with cached keys")
        let misaligned = AttentionOperand(address: 258, batchStride: bshd.batchStride, groupStride: p * d, headStride: d, rowStride: g * p * d)
        XCTAssertNil(CuDNNAttention.shape(problem, type: .bfloat16, operands: [.q: misaligned]))
    }

    /// Dropout as cudnn-frontend expands it: a Bernoulli mask of keep probability 1 - p drawn from the
    /// int64 seed and offset tensors, multiplied into P (then by 1 / (1 - p)) before P·V.
    func testForwardDropout() throws {
        let g = SDPAGraphs.forward(shape(heads: 4, kvHeads: 2, queries: 64, keys: 64, causal: true, dropout: 0.25), maskValue: -.infinity)
        assertWellFormed(g)
        XCTAssertEqual(Array(names(g).suffix(5)), ["div", "rng", "dropout_mask_mul", "dropout_scale", "bmm2"])
        XCTAssertEqual(try output(g, "div").dataType, .float, "P stays fp32 until scaled")
        XCTAssertEqual(try output(g, "dropout_scale").dataType, .bfloat16)
        let mask = try output(g, "rng")
        XCTAssertEqual(mask.dims, [2, 4, 64, 64])
        XCTAssertEqual(mask.strides, [4 * 64 * 64, 64 * 64, 64, 1])
        XCTAssertTrue(mask.isVirtual)
        guard case .bernoulli(_, let probability, let seed, let offset, _) = try XCTUnwrap(g.operations.first { $0.name == "rng" }) else {
            return XCTFail("rng is a Bernoulli draw")
        }
        XCTAssertEqual(probability, 0.75)
        XCTAssertEqual([seed, offset], [SDPARole.dropoutSeed.rawValue, SDPARole.dropoutOffset.rawValue])
        for role in [SDPARole.dropoutSeed, .dropoutOffset] {
            let t = try XCTUnwrap(g.tensor(role.rawValue))
            XCTAssertEqual(t.dataType, .int64)
            XCTAssertEqual(t.dims, [1, 1, 1, 1])
            XCTAssertFalse(t.isVirtual)
        }
        XCTAssertEqual(g.tensor(SDPAGraphs.dropoutScaleUID)?.scalar, .float(1 / (1 - 0.25)))
    }

    /// The backward draws the mask again first, drops P for dV and dP for dS, and scales rowsum(dO ∘ O)
    /// by 1 - p and dS by 1 / (1 - p).
    func testBackwardDropout() throws {
        let g = SDPAGraphs.backward(shape(heads: 4, kvHeads: 4, queries: 64, keys: 64, causal: true, dropout: 0.1), maskValue: -.infinity)
        assertWellFormed(g)
        let order = names(g)
        XCTAssertEqual(order.first, "rng")
        for (before, after) in [("exp_s", "mul_p_dropout_mask"), ("mul_p_dropout_mask", "mul_p_dropout_scale"),
                                ("mul_p_dropout_scale", "reshape_p"), ("matmul_dO_VT", "dP_dropout_mask"),
                                ("dP_dropout_mask", "sub_dP_softmax_sum"), ("mul_dP_exp_s", "mul_dS_dropout_scale"),
                                ("mul_dS_dropout_scale", "mul_dS_attn_scale")] {
            XCTAssertLessThan(try XCTUnwrap(order.firstIndex(of: before)), try XCTUnwrap(order.firstIndex(of: after)), "\(before) then \(after)")
        }
        XCTAssertEqual(g.tensor(SDPAGraphs.dropoutScaleInverseUID)?.scalar, .float(1 - 0.1))
        XCTAssertNil(g.tensor(SDPAGraphs.oneUID), "rowsum(dO ∘ O) is scaled by 1 - p, not 1")
        XCTAssertEqual(g.deviceTensors.map(\.uid).sorted(), Array(1...11) + [17, 18])
    }
}
