/// The sizes, layouts and options of one scaled-dot-product-attention problem, as cuDNN sees it:
/// 4-D `[batch, heads, rows, headDim]` tensors. Query-like tensors (q, o, dO, dQ) have `heads` heads,
/// key-like ones (k, v, dK, dV) `kvHeads` (GQA when fewer). Strides are in elements, the last is 1.
/// This value is also the key of the plan caches (`scale` included: a plan never outlives a change of it).
public struct SDPAShape: Hashable, Sendable {
    public var batch: Int, heads: Int, kvHeads: Int, queries: Int, keys: Int, headDim: Int
    public var dataType: CuDNNBackend.DataType
    /// Mask scores of keys after the query's own position, the queries being the last `queries`
    /// of the `keys` positions (bottom-right diagonal, as Ops.attention defines it).
    public var causal: Bool
    public var scale: Float
    /// Dropout probability on the attention probabilities (0: none); its mask comes from cuDNN's own
    /// generator under the `dropoutSeed` and `dropoutOffset` tensors.
    public var dropout: Float
    /// `[batch, head, row, 1]` strides of each operand, keyed by role; the backward's gradients
    /// reuse their forward operand's role name prefixed with "d" (dO, dQ, dK, dV).
    public var strides: [SDPARole: [Int]]

    public init(batch: Int, heads: Int, kvHeads: Int, queries: Int, keys: Int, headDim: Int,
                dataType: CuDNNBackend.DataType, causal: Bool, scale: Float, dropout: Float = 0, strides: [SDPARole: [Int]]) {
        (self.batch, self.heads, self.kvHeads, self.queries, self.keys, self.headDim) = (batch, heads, kvHeads, queries, keys, headDim)
        (self.dataType, self.causal, self.scale, self.dropout, self.strides) = (dataType, causal, scale, dropout, strides)
    }

    func strides(of role: SDPARole) -> [Int64] {
        guard let s = strides[role] else { preconditionFailure("SDPAShape: no strides for \(role)") }
        return s.map(Int64.init)
    }
}

/// The device tensors of the SDPA graphs, each with the fixed uid it has in the variant pack.
public enum SDPARole: Int64, CaseIterable, Hashable, Sendable {
    case q = 1, k = 2, v = 3, o = 4
    /// Natural-log log-sum-exp of each row's scaled scores, fp32 `[batch, heads, queries, 1]` contiguous.
    case stats = 5
    case dO = 6, dQ = 7, dK = 8, dV = 9
    /// Backward scratch in the workspace: rowsum(dO ∘ O), fp32 `[batch, heads, queries, 1]`.
    case softmaxSum = 10
    /// Backward scratch in the workspace: fp32 dQ accumulator `[batch, heads, queries, headDim]`.
    case dQAccumulator = 11
    /// Dropout's generator seed and offset, int64 `[1, 1, 1, 1]` in device memory.
    case dropoutSeed = 17, dropoutOffset = 18
}

/// The cuDNN 9 graphs for flash attention, expanded from the pattern cuDNN's fused SDPA engines
/// recognize (learned from how NVIDIA's cudnn-frontend expands its SDPA forward and backward nodes
/// for cuDNN 9: matmul, scale, mask, softmax by max/sub/exp/sum, stats, dropout by a Bernoulli mask
/// and its scale, matmul; no bias, padding or paged caches).
///
///     let shape = SDPAShape(batch: 2, heads: 8, kvHeads: 2, queries: 128, keys: 128, headDim: 64,
///                           dataType: .bfloat16, causal: true, scale: 0.125, strides: ...)
///     let forward = SDPAGraphs.forward(shape, maskValue: -.infinity)
///
/// NOTE: written without a GPU; never yet finalized by cuDNN (see the cudnn-sdpa branch report).
public enum SDPAGraphs {
    /// Uids of the by-value scalars (variant-pack entries pointing to host memory).
    public static let scaleUID: Int64 = 12, oneUID: Int64 = 13, maskValueUID: Int64 = 14
    /// The key and query counts added to / subtracted from the row index for the bottom-right diagonal.
    public static let keyCountUID: Int64 = 15, queryCountUID: Int64 = 16
    /// Dropout's scale 1 / (1 - p) and its inverse 1 - p.
    public static let dropoutScaleUID: Int64 = 19, dropoutScaleInverseUID: Int64 = 20
    /// Virtual tensors are numbered from here.
    static let firstVirtualUID: Int64 = 100

    /// The value masked scores get: -inf from cuDNN 9.10, the lowest finite float before (cudnn-frontend's choice).
    public static func maskValue(cudnnVersion: Int) -> Float {
        cudnnVersion >= 91000 ? -.infinity : -Float.greatestFiniteMagnitude
    }

    /// Forward: O = softmax(scale · Q·Kᵀ [masked]) · V, and Stats = the rows' log-sum-exp.
    public static func forward(_ shape: SDPAShape, maskValue: Float) -> CuDNNGraphSpec {
        var g = Builder(shape)
        let q = g.input(.q), k = g.transposedKeys(.k), v = g.input(.v)
        let scores = g.matmul("bmm1", q, k, dims: g.scoreDims)
        let scaled = g.pointwise("attn_scale", .mul, scores, g.scalar(SDPAGraphs.scaleUID, "attn_scale", .float(shape.scale)))
        let masked = shape.causal ? g.causalMask(scaled, maskValue: maskValue) : scaled
        let max = g.reduction("max", .max, masked, dims: g.rowDims)
        let exp = g.pointwise("exp", .exp, g.pointwise("sub", .sub, masked, max))
        let sum = g.reduction("sum", .add, exp, dims: g.rowDims)
        let log = g.pointwise("log", .log, sum)
        g.pointwise("add", .add, max, log, into: g.input(.stats))
        var probabilities = g.pointwise("div", .div, exp, sum, type: shape.dropout > 0 ? .float : shape.dataType)
        if shape.dropout > 0 {
            let kept = g.pointwise("dropout_mask_mul", .mul, probabilities, g.keepMask())
            probabilities = g.pointwise("dropout_scale", .mul, kept, g.dropoutScale(), type: shape.dataType)
        }
        g.matmul("bmm2", probabilities, v, into: g.input(.o))
        return g.graph
    }

    /// Backward from Q, K, V, O, dO and the forward's Stats: dQ, dK, dV (dK, dV summed over each
    /// group's query heads). Needs fp32 scratch for rowsum(dO ∘ O) and the dQ accumulator
    /// (`SDPARole.softmaxSum`, `.dQAccumulator`). With dropout the keep mask is drawn again from the
    /// forward's seed and offset: dV = (P ∘ M s)ᵀ dO, dS = P ∘ (dP ∘ M − Δ (1 − p)) s, s = 1 / (1 − p).
    public static func backward(_ shape: SDPAShape, maskValue: Float) -> CuDNNGraphSpec {
        var g = Builder(shape)
        let keep = shape.dropout > 0 ? g.keepMask() : nil
        let q = g.input(.q), k = g.transposedKeys(.k), v = g.transposedKeys(.v), o = g.input(.o)
        let stats = g.input(.stats), dO = g.input(.dO)
        let b = Int64(shape.batch), h = Int64(shape.heads), sq = Int64(shape.queries), sk = Int64(shape.keys)
        let d = Int64(shape.headDim)

        // Δ = rowsum(dO ∘ O), kept in the workspace (cudnn-frontend gives the product these strides).
        let product = g.pointwise("mul_dO_O", .mul, dO, o, dims: [b, h, sq, d], strides: [h * sq * d, sq * d, h * d, 1])
        let rowSum = g.reduction("reduce_dO_o", .add, product, dims: g.rowDims)
        let inverse = keep == nil ? g.scalar(SDPAGraphs.oneUID, "one", .float(1))
            : g.scalar(SDPAGraphs.dropoutScaleInverseUID, "dropout_scale_inv", .float(1 - shape.dropout))
        let softmaxSum = g.pointwise("scale_dropout_inv", .mul, rowSum, inverse, into: g.input(.softmaxSum))

        // P = exp(scale · Q·Kᵀ − Stats), masked.
        let scores = g.matmul("matmul_Q_KT", q, k, dims: g.scoreDims)
        let scale = g.scalar(SDPAGraphs.scaleUID, "attn_scale", .float(shape.scale))
        let shifted = g.pointwise("sub_s_m", .sub, g.pointwise("mul_s_attn_scale", .mul, scores, scale), stats)
        let masked = shape.causal ? g.causalMask(shifted, maskValue: maskValue) : shifted
        let p = g.pointwise("exp_s", .exp, masked)

        // dV = Pᵀ·dO (P dropped and scaled with dropout).
        var dropped = p
        if let keep {
            dropped = g.pointwise("mul_p_dropout_scale", .mul, g.pointwise("mul_p_dropout_mask", .mul, p, keep), g.dropoutScale())
        }
        let transposedStrides: [Int64] = [h * sq * sk, sq * sk, 1, sk]
        let pT = g.reshape("reshape_p", dropped, dims: [b, h, sk, sq], strides: transposedStrides, type: shape.dataType)
        g.headSummedMatmul("matmul_pT_dO", "red_dV_head", pT, dO, into: .dV)

        // dS = scale · P ∘ (dO·Vᵀ − Δ) (dO·Vᵀ dropped, and the product scaled, with dropout).
        var dP = g.matmul("matmul_dO_VT", dO, v, dims: g.scoreDims)
        if let keep { dP = g.pointwise("dP_dropout_mask", .mul, dP, keep) }
        let dPShifted = g.pointwise("sub_dP_softmax_sum", .sub, dP, softmaxSum)
        var dPP = g.pointwise("mul_dP_exp_s", .mul, dPShifted, p)
        if keep != nil { dPP = g.pointwise("mul_dS_dropout_scale", .mul, dPP, g.dropoutScale()) }
        let dS = g.pointwise("mul_dS_attn_scale", .mul, dPP, scale)

        // dK = dSᵀ·Q.
        let dST = g.reshape("reshape_dS", dS, dims: [b, h, sk, sq], strides: transposedStrides, type: shape.dataType)
        g.headSummedMatmul("matmul_dST_Q", "red_dK_head", dST, q, into: .dK)

        // dQ = dS·K, accumulated in fp32, then rounded into dQ.
        let kStrides = shape.strides(of: .k)
        let kRows = g.reshape("reshape_k", k, dims: [b, Int64(shape.kvHeads), sk, d], strides: kStrides, type: .float)
        let accumulator = g.input(.dQAccumulator)
        g.matmul("matmul_dS_K", dS, kRows, into: accumulator)
        g.pointwise("identity_dQ", .identity, accumulator, into: g.input(.dQ))
        return g.graph
    }

    /// Appends tensors and operations with fresh uids for the intermediates; the data types follow
    /// cudnn-frontend's defaults (fp32 intermediates and compute, the problem's type for the
    /// probabilities fed to a matmul).
    struct Builder {
        let shape: SDPAShape
        var graph = CuDNNGraphSpec()
        var nextUID = SDPAGraphs.firstVirtualUID

        init(_ shape: SDPAShape) { self.shape = shape }

        var scoreDims: [Int64] { [Int64(shape.batch), Int64(shape.heads), Int64(shape.queries), Int64(shape.keys)] }
        var rowDims: [Int64] { [Int64(shape.batch), Int64(shape.heads), Int64(shape.queries), 1] }

        /// A device tensor in its natural `[b, h, rows, d]` (or `[b, h, queries, 1]`) form.
        mutating func input(_ role: SDPARole) -> Int64 {
            let (heads, rows, last, type) = dimensions(of: role)
            let dims = [role == .dropoutSeed || role == .dropoutOffset ? 1 : Int64(shape.batch), heads, rows, last]
            let strides = [.stats, .softmaxSum, .dQAccumulator, .dropoutSeed, .dropoutOffset].contains(role)
                ? CuDNNGraphSpec.contiguousStrides(dims) : shape.strides(of: role)
            return graph.add(.init(uid: role.rawValue, name: "\(role)", dims: dims, strides: strides, dataType: type,
                                   isVirtual: false, scalar: nil))
        }

        /// K or V as `[b, kvHeads, headDim, keys]` (the last two dims and strides swapped), as the
        /// matmuls Q·Kᵀ and dO·Vᵀ take them.
        mutating func transposedKeys(_ role: SDPARole) -> Int64 {
            let s = shape.strides(of: role)
            let dims = [Int64(shape.batch), Int64(shape.kvHeads), Int64(shape.headDim), Int64(shape.keys)]
            return graph.add(.init(uid: role.rawValue, name: "\(role)", dims: dims, strides: [s[0], s[1], s[3], s[2]],
                                   dataType: shape.dataType, isVirtual: false, scalar: nil))
        }

        private func dimensions(of role: SDPARole) -> (Int64, Int64, Int64, CuDNNBackend.DataType) {
            let h = Int64(shape.heads), hk = Int64(shape.kvHeads), sq = Int64(shape.queries), sk = Int64(shape.keys)
            let d = Int64(shape.headDim)
            switch role {
            case .q, .o, .dO, .dQ: return (h, sq, d, shape.dataType)
            case .k, .v, .dK, .dV: return (hk, sk, d, shape.dataType)
            case .stats, .softmaxSum: return (h, sq, 1, .float)
            case .dQAccumulator: return (h, sq, d, .float)
            case .dropoutSeed, .dropoutOffset: return (1, 1, 1, .int64)
            }
        }

        /// Dropout's keep mask `[b, heads, queries, keys]` (fp32 ones and zeros), drawn by cuDNN from the
        /// seed and offset tensors, ones with probability 1 − dropout.
        mutating func keepMask() -> Int64 {
            let seed = input(.dropoutSeed), offset = input(.dropoutOffset)
            let mask = virtual("rng", dims: scoreDims)
            graph.add(.bernoulli(name: "rng", probability: 1 - Double(shape.dropout), seed: seed, offset: offset, y: mask))
            return mask
        }

        /// The by-value scalar 1 / (1 − dropout), in fp32 as cudnn-frontend computes it.
        mutating func dropoutScale() -> Int64 {
            scalar(SDPAGraphs.dropoutScaleUID, "dropout_scale", .float(1 / (1 - shape.dropout)))
        }

        mutating func scalar(_ uid: Int64, _ name: String, _ value: CuDNNGraphSpec.Scalar) -> Int64 {
            if graph.tensor(uid) != nil { return uid }
            return graph.add(.init(uid: uid, name: name, dims: [1, 1, 1, 1], strides: [1, 1, 1, 1], dataType: value.dataType,
                                   isVirtual: false, scalar: value))
        }

        mutating func virtual(_ name: String, dims: [Int64], strides: [Int64]? = nil, type: CuDNNBackend.DataType = .float) -> Int64 {
            defer { nextUID += 1 }
            return graph.add(.init(uid: nextUID, name: name, dims: dims, strides: strides ?? CuDNNGraphSpec.contiguousStrides(dims),
                                   dataType: type, isVirtual: true, scalar: nil))
        }

        @discardableResult
        mutating func matmul(_ name: String, _ a: Int64, _ b: Int64, dims: [Int64]? = nil, into output: Int64? = nil) -> Int64 {
            let c = output ?? virtual(name, dims: dims!)
            graph.add(.matmul(name: name, a: a, b: b, c: c))
            return c
        }

        /// y = mode(x[, b][, t]); a new virtual output takes x's dims and strides unless given.
        @discardableResult
        mutating func pointwise(_ name: String, _ mode: CuDNNBackend.PointwiseMode, _ x: Int64, _ b: Int64? = nil, _ t: Int64? = nil,
                                dims: [Int64]? = nil, strides: [Int64]? = nil, type: CuDNNBackend.DataType = .float,
                                computeType: CuDNNBackend.DataType = .float, axis: Int64? = nil, into output: Int64? = nil) -> Int64 {
            let source = graph.tensor(x)!
            let y = output ?? virtual(name, dims: dims ?? source.dims, strides: strides ?? (dims == nil ? source.strides : nil), type: type)
            graph.add(.pointwise(name: name, mode: mode, x: x, b: b, t: t, y: y, computeType: computeType, axis: axis))
            return y
        }

        mutating func reduction(_ name: String, _ op: CuDNNBackend.ReductionOperator, _ x: Int64, dims: [Int64]? = nil,
                                into output: Int64? = nil) -> Int64 {
            let y = output ?? virtual(name, dims: dims!)
            graph.add(.reduction(name: name, op: op, x: x, y: y))
            return y
        }

        mutating func reshape(_ name: String, _ x: Int64, dims: [Int64], strides: [Int64], type: CuDNNBackend.DataType) -> Int64 {
            let y = virtual(name, dims: dims, strides: strides, type: type)
            graph.add(.reshape(name: name, x: x, y: y))
            return y
        }

        /// `[b, heads, keys, d]` = a·b into the key-like gradient `role`; with GQA the full-head product
        /// is a virtual tensor summed over each group's heads by a reduction (as cudnn-frontend does).
        mutating func headSummedMatmul(_ name: String, _ reductionName: String, _ a: Int64, _ b: Int64, into role: SDPARole) {
            let output = input(role)
            guard shape.heads != shape.kvHeads else {
                matmul(name, a, b, into: output)
                return
            }
            let full = virtual(name, dims: [Int64(shape.batch), Int64(shape.heads), Int64(shape.keys), Int64(shape.headDim)],
                               type: shape.dataType)
            matmul(name, a, b, into: full)
            _ = reduction(reductionName, .add, full, into: output)
        }

        /// Keeps score (row i, column j) where i + keys − queries ≥ j and sets the rest to `maskValue`:
        /// cudnn-frontend's diagonal band (right bound 0) of gen-index, compare and binary-select. When
        /// keys ≠ queries the diagonal is aligned bottom-right as cudnn-frontend does it, adding the key
        /// count to the row index and subtracting the query count (int32 by-value scalars).
        mutating func causalMask(_ scores: Int64, maskValue: Float) -> Int64 {
            var row = pointwise("gen_row_index", .generateIndex, scores, type: .int32, axis: 2)
            let column = pointwise("gen_col_index", .generateIndex, scores, type: .int32, axis: 3)
            if shape.keys != shape.queries {
                let keys = scalar(SDPAGraphs.keyCountUID, "seq_len_kv", .int32(Int32(shape.keys)))
                let queries = scalar(SDPAGraphs.queryCountUID, "seq_len_q", .int32(Int32(shape.queries)))
                row = pointwise("row+skv", .add, row, keys, type: .int32, computeType: .int32, axis: 3)
                row = pointwise("row+skv-sq", .sub, row, queries, type: .int32, computeType: .int32, axis: 3)
            }
            let keep = pointwise("row>=col", .compareGreaterEqual, row, column, type: .boolean, computeType: .boolean)
            let fill = scalar(SDPAGraphs.maskValueUID, "mask_value", .float(maskValue))
            return pointwise("binary_select", .binarySelect, scores, fill, keep)
        }
    }
}
