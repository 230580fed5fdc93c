/// Grouped linear layers: the rows of one input come in consecutive groups (an MoE layer's tokens sorted by
/// expert, `counts[g]` rows for expert g) and group g goes through its own weight `[out, in]`. On the GPU each
/// GEMM of the group is a cuBLASLt call and the calls of one op run concurrently (`GroupedGemm`); elsewhere,
/// and for operands those GEMMs do not take, each group runs the dense op (`linear`, `matmul`, the weight
/// gradients), which is exactly what running the experts one after another computes. A group of 0 rows adds
/// nothing and its weight gradient is 0.
extension Ops {
    /// `x [R, in]` with rows in groups of `counts` (summing to R), group g times `weights[g]ᵀ`: `[R, out]`.
    ///
    /// ```swift
    /// let h = Ops.groupedLinear(tokens, weights: experts.map(\.fc1), counts: [3, 0, 5])   // tokens [8, hidden]
    /// ```
    public static func groupedLinear(_ x: Tensor, weights: [Tensor], counts: [Int]) -> Tensor {
        checkGroups(rows: x, columns: x.shape.last!, weights: weights, weightColumns: 1, counts: counts, op: "groupedLinear")
        if cudaDevice([x] + weights, op: "grouped linear") != nil, let y = CUDAOps.groupedLinear(x, weights: weights, counts: counts) {
            return y
        }
        return concatGroups(groupRanges(counts).enumerated().map { g, rows in
            rows.isEmpty ? nil : linear(x.narrowed(0, start: rows.lowerBound, length: rows.count), weight: weights[g], bias: nil)
        }, columns: weights[0].shape[0], like: x)
    }

    /// The input gradient of `groupedLinear`: `gradOutput [R, out]`, group g times `weights[g]`: `[R, in]`.
    public static func groupedLinearInputGradient(_ gradOutput: Tensor, weights: [Tensor], counts: [Int]) -> Tensor {
        checkGroups(rows: gradOutput, columns: gradOutput.shape.last!, weights: weights, weightColumns: 0, counts: counts,
                    op: "groupedLinearInputGradient")
        if cudaDevice([gradOutput] + weights, op: "grouped linear input gradient") != nil,
           let gx = CUDAOps.groupedLinearInputGradient(gradOutput, weights: weights, counts: counts) {
            return gx
        }
        return concatGroups(groupRanges(counts).enumerated().map { g, rows in
            rows.isEmpty ? nil : matmul(gradOutput.narrowed(0, start: rows.lowerBound, length: rows.count), weights[g])
        }, columns: weights[0].shape[1], like: gradOutput)
    }

    /// The weight gradients of `groupedLinear`, `gᵀ x` over each group's rows. Group g's gradient is added into
    /// `targets[g]` when given (a contiguous fp32 main grad, as `accumulateLinearWeightGradient`) and nil is
    /// returned for it; otherwise it is returned in the gradient's dtype (zeros for an empty group).
    ///
    /// ```swift
    /// let grads = Ops.groupedLinearWeightGradients(gradOutput: g, input: x, counts: counts, into: mainGrads)
    /// ```
    public static func groupedLinearWeightGradients(gradOutput: Tensor, input: Tensor, counts: [Int],
                                                    into targets: [Tensor?]) -> [Tensor?] {
        let (out, inFeatures) = (gradOutput.shape.last!, input.shape.last!)
        precondition(gradOutput.rank == 2 && input.rank == 2 && gradOutput.shape[0] == input.shape[0],
                     "grouped weight gradient of \(gradOutput.shape) and \(input.shape)")
        precondition(targets.count == counts.count && counts.reduce(0, +) == input.shape[0] && counts.allSatisfy { $0 >= 0 },
                     "grouped weight gradient: \(targets.count) targets, counts \(counts) for \(input.shape[0]) rows")
        for target in targets.compactMap({ $0 }) {
            precondition(target.shape == [out, inFeatures] && target.dtype == .float32 && target.isContiguous,
                         "grouped weight gradient accumulates into contiguous fp32 [\(out), \(inFeatures)], got \(target.shape) \(target.dtype)")
        }
        if cudaDevice([gradOutput, input] + targets.compactMap { $0 }, op: "grouped linear weight gradient") != nil,
           let grads = CUDAOps.groupedLinearWeightGradients(gradOutput, input, counts: counts, into: targets) {
            return grads
        }
        return groupRanges(counts).enumerated().map { g, rows in
            let (dy, x) = (gradOutput.narrowed(0, start: rows.lowerBound, length: rows.count),
                           input.narrowed(0, start: rows.lowerBound, length: rows.count))
            if let target = targets[g] {
                accumulateLinearWeightGradient(gradOutput: dy, input: x, into: target, withBias: false)
                return nil
            }
            if rows.isEmpty { return Tensor.zeros([out, inFeatures], dtype: gradOutput.dtype, device: gradOutput.device) }
            return linearParameterGradients(gradOutput: dy, input: x, withBias: false).weight
        }
    }

    /// The row ranges of consecutive groups of `counts` rows (`[2, 0, 3]`: `0..<2, 2..<2, 2..<5`).
    public static func groupRanges(_ counts: [Int]) -> [Range<Int>] {
        var start = 0
        return counts.map { count in
            defer { start += count }
            return start..<(start + count)
        }
    }

    /// The non-empty groups' results stacked in order; `[0, columns]` when every group is empty.
    private static func concatGroups(_ pieces: [Tensor?], columns: Int, like x: Tensor) -> Tensor {
        let present = pieces.compactMap { $0 }
        return present.isEmpty ? Tensor.zeros([0, columns], dtype: x.dtype, device: x.device) : concat(present, dim: 0)
    }

    /// `x [R, columns]` against one weight per group, all of one shape whose dimension `weightColumns` is `columns`.
    private static func checkGroups(rows x: Tensor, columns: Int, weights: [Tensor], weightColumns: Int, counts: [Int], op: String) {
        precondition(x.rank == 2 && !weights.isEmpty && weights.count == counts.count,
                     "\(op): input \(x.shape), \(weights.count) weights, \(counts.count) groups")
        precondition(counts.allSatisfy { $0 >= 0 } && counts.reduce(0, +) == x.shape[0],
                     "\(op): group sizes \(counts) do not add up to the input's \(x.shape[0]) rows")
        precondition(weights.allSatisfy { $0.rank == 2 && $0.shape == weights[0].shape && $0.shape[weightColumns] == columns },
                     "\(op): weights \(weights.map(\.shape)) do not all match the input's \(columns) columns")
    }
}
