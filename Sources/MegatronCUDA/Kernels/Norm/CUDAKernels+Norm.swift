extension CUDAKernels {
    /// Widest rows the norm kernels take: each row lives in the registers of a team of at most 512
    /// threads, 3 chunks of 8 elements each in the backward (`NormLaunchPlan.backwardMaxSlots`).
    public static let normMaxColumns = 512 * 3 * 8

    /// Layer norm over the last dimension of [rows, columns]:
    /// y = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + epsilon) (biased variance).
    /// Writes the per-row `mean` and `rstd` (fp32, `rows` each) that the backward needs.
    /// `weight` and `bias` have `columns` elements of `type`; `bias` 0 means none.
    ///
    /// With a `residual` (the fused residual add of a pre-norm transformer), `sum` = input + residual
    /// (rounded to `type`) is written as well and is what gets normalized; both are 0 for a plain norm.
    /// With `residualDropout` the residual is dropped first (Megatron's bias-dropout-add fusion), element
    /// i of the `[rows, columns]` residual by element i of the draw, rounded to `type` as an unfused
    /// `dropout` stores it: the same sum as `dropout` then the add.
    ///
    ///     try nn.layerNormForward(y, mean: mean, rstd: rstd, input: x, weight: gamma, bias: beta,
    ///                             rows: tokens, columns: hidden, epsilon: 1e-5, type: .bfloat16, stream: stream)
    public func layerNormForward(_ y: UInt64, mean: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, bias: UInt64,
                                 residual: UInt64 = 0, sum: UInt64 = 0, residualDropout: DropoutDraw? = nil, rows: Int,
                                 columns: Int, epsilon: Float, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = Self.normForwardPrefix(residual: residual, dropout: residualDropout) + "layer_norm_forward_" + type.rawValue
        try Self.requirePointers(kernel, ["y": y, "mean": mean, "rstd": rstd, "input": input, "weight": weight])
        let plan = try normPlan(kernel, rows: rows, columns: columns, residual: residual, sum: sum, backward: false)
        let vectorized = Self.vectorizable(columns: columns, y, input, weight, bias, residual, sum)
        try launch("norm.cu", "\(kernel)_\(plan.slots)", grid: .init(plan.blocks), block: .init(plan.threads), stream: stream,
                   [.pointer(y), .pointer(sum), .pointer(mean), .pointer(rstd), .pointer(input), .pointer(residual),
                    .pointer(weight), .pointer(bias), .int64(Int64(rows)), .int32(Int32(columns)), .float32(epsilon),
                    .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))] + (residualDropout ?? .none).arguments)
    }

    /// The forward kernel's name prefix: none, `add_` with a residual, `add_dropout_` with its dropout too.
    private static func normForwardPrefix(residual: UInt64, dropout: DropoutDraw?) -> String {
        residual == 0 ? "" : dropout == nil ? "add_" : "add_dropout_"
    }

    /// RMS norm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + epsilon); writes `rstd` (fp32 per row).
    /// `residual`, `sum` and `residualDropout` as in `layerNormForward`.
    public func rmsNormForward(_ y: UInt64, rstd: UInt64, input: UInt64, weight: UInt64, residual: UInt64 = 0,
                               sum: UInt64 = 0, residualDropout: DropoutDraw? = nil, rows: Int, columns: Int, epsilon: Float,
                               type: KernelElementType, stream: CUDAStream) throws {
        let kernel = Self.normForwardPrefix(residual: residual, dropout: residualDropout) + "rms_norm_forward_" + type.rawValue
        try Self.requirePointers(kernel, ["y": y, "rstd": rstd, "input": input, "weight": weight])
        let plan = try normPlan(kernel, rows: rows, columns: columns, residual: residual, sum: sum, backward: false)
        let vectorized = Self.vectorizable(columns: columns, y, input, weight, residual, sum)
        try launch("norm.cu", "\(kernel)_\(plan.slots)", grid: .init(plan.blocks), block: .init(plan.threads), stream: stream,
                   [.pointer(y), .pointer(sum), .pointer(rstd), .pointer(input), .pointer(residual), .pointer(weight),
                    .int64(Int64(rows)), .int32(Int32(columns)), .float32(epsilon), .int32(vectorized ? 1 : 0),
                    .int32(Int32(plan.team))] + (residualDropout ?? .none).arguments)
    }

    /// The backward kernel's name prefix: none, `add_` with a sum gradient, `add_dropout_` with the
    /// residual's dropout too (which needs the sum gradient and comes with a residual gradient output).
    private static func normBackwardPrefix(sumGradient: UInt64, residualGradient: UInt64, dropout: DropoutDraw?) throws -> String {
        try require((dropout == nil) == (residualGradient == 0),
                    "norm backward: residualGradient and residualDropout go together (both or neither)")
        try require(dropout == nil || sumGradient != 0, "norm backward: residualDropout needs sumGradient (the fused residual add)")
        return sumGradient == 0 ? "" : dropout == nil ? "add_" : "add_dropout_"
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
    /// stream of `layerNormForward(residual:sum:)`), is added to dx in the same pass. With
    /// `residualDropout` (the forward's draw; needs `sumGradient`) `residualGradient` gets the gradient
    /// of the dropped residual in the same pass too: dx dropped by that draw, the same values as
    /// `dropout` on the stored dx, with no mask stored or dx read back.
    public func layerNormBackward(_ dx: UInt64, weightGradient: UInt64, biasGradient: UInt64, gradient: UInt64,
                                  sumGradient: UInt64 = 0, residualGradient: UInt64 = 0, residualDropout: DropoutDraw? = nil,
                                  input: UInt64, weight: UInt64, mean: UInt64, rstd: UInt64, rows: Int, columns: Int,
                                  scratch: UInt64, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = try Self.normBackwardPrefix(sumGradient: sumGradient, residualGradient: residualGradient,
                                                 dropout: residualDropout) + "layer_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "mean": mean, "rstd": rstd, "scratch": scratch])
        let withBias = biasGradient != 0
        let plan = try normPlan(kernel, rows: rows, columns: columns, backward: true)
        let biasPartials = withBias ? scratch + UInt64(plan.blocks * columns * 4) : 0
        let vectorized = Self.vectorizable(columns: columns, dx, residualGradient, gradient, sumGradient, input, weight)
        try launch("norm.cu", "\(kernel)_\(plan.slots)", grid: .init(plan.blocks), block: .init(plan.threads),
                   sharedMemoryBytes: plan.sharedMemoryBytes, stream: stream,
                   [.pointer(dx), .pointer(residualGradient), .pointer(scratch), .pointer(biasPartials), .pointer(gradient),
                    .pointer(sumGradient), .pointer(input), .pointer(weight), .pointer(mean), .pointer(rstd),
                    .int64(Int64(rows)), .int32(Int32(columns)), .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))]
                    + (residualDropout ?? .none).arguments)
        try columnSums([weightGradient] + (withBias ? [biasGradient] : []), partials: scratch, blocks: plan.blocks,
                       columns: columns, type: type, stream: stream)
    }

    /// RMS norm backward: dx and the (overwritten, deterministic) weight gradient, as `layerNormBackward`
    /// (`sumGradient`, `residualGradient` and `residualDropout` too).
    public func rmsNormBackward(_ dx: UInt64, weightGradient: UInt64, gradient: UInt64, sumGradient: UInt64 = 0,
                                residualGradient: UInt64 = 0, residualDropout: DropoutDraw? = nil, input: UInt64,
                                weight: UInt64, rstd: UInt64, rows: Int, columns: Int, scratch: UInt64,
                                type: KernelElementType, stream: CUDAStream) throws {
        let kernel = try Self.normBackwardPrefix(sumGradient: sumGradient, residualGradient: residualGradient,
                                                 dropout: residualDropout) + "rms_norm_backward_" + type.rawValue
        try Self.requirePointers(kernel, ["dx": dx, "weightGradient": weightGradient, "gradient": gradient, "input": input,
                                          "weight": weight, "rstd": rstd, "scratch": scratch])
        let plan = try normPlan(kernel, rows: rows, columns: columns, backward: true)
        let vectorized = Self.vectorizable(columns: columns, dx, residualGradient, gradient, sumGradient, input, weight)
        try launch("norm.cu", "\(kernel)_\(plan.slots)", grid: .init(plan.blocks), block: .init(plan.threads),
                   sharedMemoryBytes: plan.sharedMemoryBytes, stream: stream,
                   [.pointer(dx), .pointer(residualGradient), .pointer(scratch), .pointer(gradient), .pointer(sumGradient),
                    .pointer(input), .pointer(weight), .pointer(rstd), .int64(Int64(rows)), .int32(Int32(columns)),
                    .int32(vectorized ? 1 : 0), .int32(Int32(plan.team))] + (residualDropout ?? .none).arguments)
        try columnSums([weightGradient], partials: scratch, blocks: plan.blocks, columns: columns, type: type, stream: stream)
    }
}

/// How a norm kernel spreads rows over threads (norm.cu): a team of `team` threads per row, each
/// holding `slots` chunks of 8 elements in registers (the kernel compiled for that count, name
/// suffix `_<slots>`), `threads / team` rows per block, `blocks` blocks.
struct NormLaunchPlan {
    /// Most chunks per thread the kernels are compiled for (norm.cu's NORM_KERNELS instantiations).
    static let forwardMaxSlots = 4, backwardMaxSlots = 3
    /// Most threads per block: the kernels' __launch_bounds__, which keep their registers in budget.
    static let forwardMaxThreads = 1024, backwardMaxThreads = 512
    /// Blocks of `backwardMaxThreads` threads that each backward kernel's __launch_bounds__ guarantees
    /// an SM holds, by slot count (norm.cu's NORM_BACKWARD_MIN_BLOCKS_<slots>): the persistent grid's size.
    static let backwardMinBlocks = [1: 2, 2: 1, 3: 1]
    /// How many times `normThreads` threads a wide row spreads over in the backward: per element it
    /// keeps x, dy, the residual gradient and two column sums in registers, about 4x the forward's state.
    static let backwardSpread = 4

    let team: Int
    let slots: Int
    let threads: Int
    let blocks: Int
    let sharedMemoryBytes: Int

    /// The team and chunks per thread for a row of `columns`. A row that fits a warp at up to
    /// `maxSlots` chunks per thread gets a warp (reductions by shuffles only; 768 columns: 3 chunks
    /// each). A wider row spreads over `spread` threads (rounded to warps, at most one per chunk),
    /// or more when that many cannot hold it in `maxSlots` chunks each: with `normThreads` 128,
    /// 4096 columns are 128 threads x 4 chunks forward and 512 x 1 backward. Nil when the row needs
    /// more than `maxTeam` threads.
    static func layout(columns: Int, maxSlots: Int, maxTeam: Int, spread: Int) -> (team: Int, slots: Int)? {
        let chunks = (columns + 7) / 8
        let roundUp = { (threads: Int) in (threads + 31) / 32 * 32 }
        let team = chunks <= 32 * maxSlots
            ? 32 : max(roundUp((chunks + maxSlots - 1) / maxSlots), min(max(32, spread / 32 * 32), roundUp(chunks)))
        guard team <= maxTeam else { return nil }
        return (team, (chunks + team - 1) / team)
    }

    /// `layout` for one direction, spreading wide rows over `normThreads` (times `backwardSpread` backward).
    static func layout(columns: Int, backward: Bool, normThreads: Int) -> (team: Int, slots: Int)? {
        backward
            ? layout(columns: columns, maxSlots: backwardMaxSlots, maxTeam: backwardMaxThreads,
                     spread: min(backwardSpread * normThreads, backwardMaxThreads))
            : layout(columns: columns, maxSlots: forwardMaxSlots, maxTeam: forwardMaxThreads,
                     spread: min(normThreads, forwardMaxThreads))
    }
}

extension CUDAKernels {
    /// Checks the shape (and that `residual` and `sum` come together) and lays out the launch
    /// (`NormLaunchPlan.layout`): a row per block for wide rows, `normThreads` per block (whole warps)
    /// for rows that fit a warp; forward one block per row group; backward as many blocks as its
    /// __launch_bounds__ guarantee an SM holds at once (a persistent grid whose blocks loop over the
    /// row groups), so the partial rows of parameter gradients stay few and no block waits for a
    /// second wave.
    func normPlan(_ kernel: String, rows: Int, columns: Int, residual: UInt64 = 0, sum: UInt64 = 0,
                  backward: Bool) throws -> NormLaunchPlan {
        try Self.requireShape(kernel, rows: rows, columns: columns)
        try Self.require((residual == 0) == (sum == 0), "\(kernel): residual and sum go together (both or neither)")
        guard columns <= Self.normMaxColumns,
              let (team, slots) = NormLaunchPlan.layout(columns: columns, backward: backward, normThreads: normThreads) else {
            throw CUDAError.invalidArgument("\(kernel): rows of \(columns) columns exceed the \(Self.normMaxColumns) "
                                            + "that a thread team holds in registers")
        }
        let maxThreads = backward ? NormLaunchPlan.backwardMaxThreads : NormLaunchPlan.forwardMaxThreads
        let threads = team > 32 ? team : max(1, min(normThreads, maxThreads) / 32) * 32
        let rowGroups = (rows + threads / team - 1) / (threads / team)
        if !backward {
            return NormLaunchPlan(team: team, slots: slots, threads: threads, blocks: min(rowGroups, Int(Int32.max)),
                                  sharedMemoryBytes: 0)
        }
        let guaranteed = NormLaunchPlan.backwardMinBlocks[slots]! * NormLaunchPlan.backwardMaxThreads / threads
        let perSM = max(1, min(guaranteed, 2048 / threads, 32))
        return NormLaunchPlan(team: team, slots: slots, threads: threads,
                              blocks: min(rowGroups, perSM * device.properties.multiprocessorCount),
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
