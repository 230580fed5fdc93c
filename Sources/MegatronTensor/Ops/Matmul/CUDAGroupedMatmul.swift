import MegatronCUDA

/// The GPU side of the grouped linear ops: one cuBLASLt GEMM per non-empty group, the groups' GEMMs of one op
/// enqueued together on `GroupedGemm`'s side streams. Each returns nil for operands it does not take (mixed
/// dtypes, an element type cuBLASLt lacks): the caller then runs the groups one by one.
extension CUDAOps {
    static func groupedLinear(_ x: Tensor, weights: [Tensor], counts: [Int]) -> Tensor? {
        guard let dataType = groupedGemmType([x] + weights) else { return nil }
        let (out, inFeatures) = (weights[0].shape[0], weights[0].shape[1])
        let input = x.madeContiguous(), w = weights.map { $0.madeContiguous() }
        let y = Tensor.empty([x.shape[0], out], dtype: x.dtype, device: x.device)
        let calls = groups(counts).map { g, rows in
            GroupedGemmCall(GemmProblem(m: rows.count, n: out, k: inFeatures, transposeB: true, inputType: dataType, outputType: dataType),
                            a: input.address(row: rows.lowerBound), b: w[g].deviceAddress, d: y.address(row: rows.lowerBound))
        }
        runGrouped(calls, on: x.device, label: "grouped linear \(x.dtype) \(counts.count)x[\(x.shape[0])x\(inFeatures)->\(out)]")
        return y
    }

    static func groupedLinearInputGradient(_ g: Tensor, weights: [Tensor], counts: [Int]) -> Tensor? {
        guard let dataType = groupedGemmType([g] + weights) else { return nil }
        let (out, inFeatures) = (weights[0].shape[0], weights[0].shape[1])
        let dy = g.madeContiguous(), w = weights.map { $0.madeContiguous() }
        let gx = Tensor.empty([g.shape[0], inFeatures], dtype: g.dtype, device: g.device)
        let calls = groups(counts).map { e, rows in
            GroupedGemmCall(GemmProblem(m: rows.count, n: inFeatures, k: out, inputType: dataType, outputType: dataType),
                            a: dy.address(row: rows.lowerBound), b: w[e].deviceAddress, d: gx.address(row: rows.lowerBound))
        }
        runGrouped(calls, on: g.device, label: "grouped linear dgrad \(g.dtype) \(counts.count)x[\(g.shape[0])x\(out)->\(inFeatures)]")
        return gx
    }

    /// dW_g = g_gᵀ x_g per group: added into `targets[g]` (fp32, beta 1) where given, else into a new tensor of
    /// the gradient's dtype (zeroed for an empty group, which runs no GEMM).
    static func groupedLinearWeightGradients(_ g: Tensor, _ x: Tensor, counts: [Int], into targets: [Tensor?]) -> [Tensor?]? {
        guard let dataType = groupedGemmType([g, x]) else { return nil }
        let (out, inFeatures) = (g.shape[1], x.shape[1])
        let dy = g.madeContiguous(), input = x.madeContiguous()
        let results: [Tensor?] = zip(counts, targets).map { count, target in
            guard target == nil else { return nil }
            return count == 0 ? Tensor.zeros([out, inFeatures], dtype: g.dtype, device: g.device)
                : Tensor.empty([out, inFeatures], dtype: g.dtype, device: g.device)
        }
        let calls = groups(counts).map { e, rows in
            let accumulate = targets[e] != nil
            return GroupedGemmCall(GemmProblem(m: out, n: inFeatures, k: rows.count, transposeA: true, inputType: dataType,
                                               outputType: accumulate ? .float32 : dataType),
                                   a: dy.address(row: rows.lowerBound), b: input.address(row: rows.lowerBound),
                                   d: (targets[e] ?? results[e]!).deviceAddress, beta: accumulate ? 1 : 0)
        }
        runGrouped(calls, on: g.device, label: "grouped linear wgrad \(g.dtype) \(counts.count)x[\(out)x\(inFeatures) over \(g.shape[0])]")
        return results
    }

    /// The GEMM element type of operands that all share one dtype cuBLASLt takes; nil otherwise.
    private static func groupedGemmType(_ operands: [Tensor]) -> GemmDataType? {
        guard let dtype = operands.first?.dtype, operands.allSatisfy({ $0.dtype == dtype }) else { return nil }
        return dtype.gemmDataType
    }

    /// The non-empty groups, numbered, with their rows.
    private static func groups(_ counts: [Int]) -> [(Int, Range<Int>)] {
        Ops.groupRanges(counts).enumerated().filter { !$0.element.isEmpty }.map { ($0.offset, $0.element) }
    }

    private static func runGrouped(_ calls: [GroupedGemmCall], on device: Device, label: @autoclosure () -> String) {
        guard !calls.isEmpty else { return }
        let context = CUDAContext.of(device)
        context.run(label()) { try context.groupedGemm().run(calls, gemm: try context.gemm(), on: context.stream) }
    }
}

private extension Tensor {
    /// The device address of row `row` of this contiguous matrix.
    func address(row: Int) -> UInt64 { deviceAddress + UInt64(row * shape[1] * dtype.byteSize) }
}
