extension NeuralKernels {
    /// Widest rows the norm kernels take: each row lives in the registers of a team of at most 512
    /// threads, 3 chunks of 8 elements each in the backward (norm.cu, NORM_BACKWARD_SLOTS).
    public static let normMaxColumns = 512 * 3 * 8

    /// Layer norm over the last dimension of [rows, columns]:
    /// y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + epsilon) (biased variance).
    /// Writes the per-row `mean` and `rstd` (fp32, `rows` each) that the backward needs.
    /// `weight` and `bias` have `columns` elements of `type`; `bias` 0 means none.
    ///
    /// With a `residual` (the fused residual add of a pre-norm transformer), `sum` = input + residual
    /// (rounded to `type`) is written as well and is what gets normalized; both are 0 for a plain norm.
    ///
    ///     try nn.layerNormForward(y, mean: mean, rstd: rstd, input: x, weight: gamma, bias: beta,
    ///                             rows: tokens, columns: hidden, epsilon: 1e-5, type: .bfloat16, stream: stream)
    public func layerNormForward(_ y: UInt64, mean: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, bias: UInt64,
                                 residual: UInt64 = 0, sum: UInt64 = 0, rows: Int, columns: Int, epsilon: Float,
                                 type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "layer_norm_forward_" + type.rawValue
        try Self.requirePointers(kernel, ["y": y, "mean": mean, "rstd": rstd, "input": input, "weight": weight])
        let plan = try normPlan(kernel, rows: rows, columns: columns, residual: residual, sum: sum, backward: false)
        let vectorized = Self.vectorizable(columns: columns, y, input, weight, bias, residual, sum)
        try launch("norm.cu", kernel, grid: .init(plan.blocks), block: .init(plan.threads), stream: stream,
                   [.pointer(y), .pointer(sum), .pointer(mean), .pointer(rstd), .pointer(input), .pointer(residual),
                    .pointer(weight), .pointer(bias), .int64(Int64(rows)), .int32(Int32(columns)), .float32(epsilon),
                    .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))])
    }

    /// RMS norm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + epsilon); writes `rstd` (fp32 per row).
    /// `residual` and `sum` as in `layerNormForward`.
    public func rmsNormForward(_ y: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, residual: UInt64 = 0,
                               sum: UInt64 = 0, rows: Int, columns: Int, epsilon: Float, type: KernelElementType,
                               stream: CUDAStream) throws {
        let kernel = "rms_norm_forward_" + type.rawValue
        try Self.requirePointers(kernel, ["y": y, "rstd": rstd, "input": input, "weight": weight])
        let plan = try normPlan(kernel, rows: rows, columns: columns, residual: residual, sum: sum, backward: false)
        let vectorized = Self.vectorizable(columns: columns, y, input, weight, residual, sum)
        try launch("norm.cu", kernel, grid: .init(plan.blocks), block: .init(plan.threads), stream: stream,
                   [.pointer(y), .pointer(sum), .pointer(rstd), .pointer(input), .pointer(residual), .pointer(weight),
                    .int64(Int64(rows)), .int32(Int32(columns)), .float32(epsilon), .int32(vectorized ? 1 : 0),
                    .int32(Int32(plan.team))])
    }

    /// fp32 elements of scratch the norm backward needs: one partial row of parameter gradients
    /// per block (twice with a bias). Depends on `normThreads`: allocate after setting it.
    public func normBackwardScratchCount(rows: Int, columns: Int, withBias: Bool) -> Int {
        guard let plan = try? normPlan("norm backward", rows: rows, columns: columns, backward: true) else { return 0 }
        return plan.blocks * columns * (withBias ? 2 : 1)
    }

    /// Layer norm backward from the forward's `mean` and `rstd`: writes dx ([rows, columns], may
    /// alias `gradient`), and overwrites `weightGradient` / `biasGradient` (`columns` of `type`;
    /// bias 0 = none) with their sums over rows. The column sums are deterministic: each block
    /// sums its rows per column in registers, writes one partial row into `scratch`
    /// (`normBackwardScratchCount` floats), and a second launch adds the partials in block order.
    ///
    /// `sumGradient` (0 = none), the gradient that reached the norm's input directly (the residual
    /// stream of `layerNormForward(residual:sum:)`), is added to dx in the same pass.
    public func layerNormBackward(_ dx: UInt64, weightGradient: UInt64, biasGradient: UInt64, gradient: UInt64,
                                  sumGradient: UInt64 = 0, input: UInt64, weight: UInt64, mean: UInt64, rstd: UInt64,
                                  rows: Int, columns: Int, scratch: UInt64, type: KernelElementType,
                                  stream: CUDAStream) throws {
        let kernel = "layer_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "mean": mean, "rstd": rstd, "scratch": scratch])
        let withBias = biasGradient != 0
        let plan = try normPlan(kernel, rows: rows, columns: columns, backward: true)
        let biasPartials = withBias ? scratch + UInt64(plan.blocks * columns * 4) : 0
        let vectorized = Self.vectorizable(columns: columns, dx, gradient, sumGradient, input, weight)
        try launch("norm.cu", kernel, grid: .init(plan.blocks), block: .init(plan.threads),
                   sharedMemoryBytes: plan.sharedMemoryBytes, stream: stream,
                   [.pointer(dx), .pointer(scratch), .pointer(biasPartials), .pointer(gradient), .pointer(sumGradient),
                    .pointer(input), .pointer(weight), .pointer(mean), .pointer(rstd), .int64(Int64(rows)),
                    .int32(Int32(columns)), .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))])
        try columnSums([weightGradient] + (withBias ? [biasGradient] : []), partials: scratch, blocks: plan.blocks,
                       columns: columns, type: type, stream: stream)
    }

    /// RMS norm backward: dx and the (overwritten, deterministic) weight gradient, as `layerNormBackward`.
    public func rmsNormBackward(_ dx: UInt64, weightGradient: UInt64, gradient: UInt64, sumGradient: UInt64 = 0,
                                input: UInt64, weight: UInt64, rstd: UInt64, rows: Int, columns: Int, scratch: UInt64,
                                type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "rms_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "rstd": rstd, "scratch": scratch])
        let plan = try normPlan(kernel, rows: rows, columns: columns, backward: true)
        let vectorized = Self.vectorizable(columns: columns, dx, gradient, sumGradient, input, weight)
        try launch("norm.cu", kernel, grid: .init(plan.blocks), block: .init(plan.threads),
                   sharedMemoryBytes: plan.sharedMemoryBytes, stream: stream,
                   [.pointer(dx), .pointer(scratch), .pointer(gradient), .pointer(sumGradient), .pointer(input),
                    .pointer(weight), .pointer(rstd), .int64(Int64(rows)), .int32(Int32(columns)),
                    .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))])
        try columnSums([weightGradient], partials: scratch, blocks: plan.blocks, columns: columns, type: type, stream: stream)
    }
}

/// How a norm kernel spreads rows over threads (norm.cu): a team of `team` threads per row, holding
/// the row in registers, `threads / team` rows per block, `blocks` blocks.
struct NormLaunchPlan {
    /// Row chunks (8 elements) each thread holds: NORM_FORWARD_SLOTS and NORM_BACKWARD_SLOTS in norm.cu.
    static let forwardSlots = 4, backwardSlots = 3
    /// Most threads per block: the kernels' __launch_bounds__, which keep their registers in budget.
    static let forwardMaxThreads = 1024, backwardMaxThreads = 512

    let team: Int
    let threads: Int
    let blocks: Int
    let sharedMemoryBytes: Int

    /// The smallest team of whole warps whose registers hold a row, preferring the most chunks per
    /// thread among the choices that waste the fewest idle slots (768 columns: 32 threads x 3 chunks;
    /// 4096: 128 x 4 forward, 256 x 2 backward). Nil when the row does not fit.
    static func team(columns: Int, slots: Int, maxTeam: Int) -> Int? {
        let chunks = (columns + 7) / 8
        var best: (team: Int, waste: Int)?
        for perThread in stride(from: slots, through: 1, by: -1) {
            let team = max(32, ((chunks + perThread - 1) / perThread + 31) / 32 * 32)
            let waste = team * perThread - chunks
            if team <= maxTeam, best.map({ waste < $0.waste }) ?? true { best = (team, waste) }
        }
        return best?.team
    }
}

extension NeuralKernels {
    /// Checks the shape (and that `residual` and `sum` come together) and lays out the launch:
    /// `normThreads` per block (whole teams, at least one), one block per row group forward; backward
    /// about 16 warps per SM (its threads use ~128 registers), each block looping over row groups,
    /// so the partial rows of parameter gradients stay few.
    func normPlan(_ kernel: String, rows: Int, columns: Int, residual: UInt64 = 0, sum: UInt64 = 0,
                  backward: Bool) throws -> NormLaunchPlan {
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.require((residual == 0) == (sum == 0), "\(kernel): residual and sum go together (both or neither)")
        let maxThreads = backward ? NormLaunchPlan.backwardMaxThreads : NormLaunchPlan.forwardMaxThreads
        let slots = backward ? NormLaunchPlan.backwardSlots : NormLaunchPlan.forwardSlots
        guard columns <= Self.normMaxColumns,
              let team = NormLaunchPlan.team(columns: columns, slots: slots, maxTeam: maxThreads) else {
            throw CUDAError.invalidArgument("\(kernel): rows of \(columns) columns exceed the \(Self.normMaxColumns) "
                                            + "that a thread team holds in registers")
        }
        let threads = max(1, min(normThreads, maxThreads) / team) * team
        let rowGroups = (rows + threads / team - 1) / (threads / team)
        if !backward {
            return NormLaunchPlan(team: team, threads: threads, blocks: min(rowGroups, Int(Int32.max)), sharedMemoryBytes: 0)
        }
        let perSM = max(1, 512 / threads)
        return NormLaunchPlan(team: team, threads: threads, blocks: min(rowGroups, perSM * device.properties.multiprocessorCount),
                              sharedMemoryBytes: threads > team ? columns * 4 : 0)
    }

    /// Sums each [blocks, columns] fp32 partial block of `partials` (one after the other) into one of `outputs`.
    private func columnSums(_ outputs: [UInt64], partials: UInt64, blocks: Int, columns: Int, type: KernelElementType,
                            stream: CUDAStream) throws {
        // 32 columns x 16 slices of the partial rows per block (norm.cu's COLUMN_SUM_SLICES); blockIdx.y picks the output.
        try launch("norm.cu", "column_sum_" + type.rawValue, grid: .init((columns + 31) / 32, outputs.count),
                   block: .init(32, 16), stream: stream,
                   [.pointer(outputs[0]), .pointer(outputs.last!), .pointer(partials), .int32(Int32(blocks)),
                    .int32(Int32(columns))])
    }
}
