import Foundation

/// One tensor of a multi-tensor AdamW step: fp32 master `param`, its gradient (fp32, bf16 or
/// fp16, the step's `gradientType`), fp32 moments, and an optional bf16 `copy` (0 = none) that
/// receives the updated parameters (the model's bf16 weights).
public struct AdamWTensor: Equatable, Sendable {
    public var param: UInt64, gradient: UInt64, expAvg: UInt64, expAvgSq: UInt64, copy: UInt64
    public var count: Int

    public init(param: UInt64, gradient: UInt64, expAvg: UInt64, expAvgSq: UInt64, copy: UInt64 = 0, count: Int) {
        (self.param, self.gradient, self.expAvg, self.expAvgSq, self.copy, self.count) = (param, gradient, expAvg, expAvgSq, copy, count)
    }

    /// The device table `CUDAKernels.adamW` reads: six 64-bit words per tensor, in the layout of
    /// optimizer.cu's AdamWSlot. Upload it once while the buffers stay put (Megatron's
    /// contiguous parameter and gradient buffers do).
    public static func table(_ tensors: [AdamWTensor]) -> [UInt64] {
        tensors.flatMap { [$0.param, $0.gradient, $0.expAvg, $0.expAvgSq, $0.copy, UInt64($0.count)] }
    }
}

/// AdamW hyperparameters for one step (torch.optim.AdamW semantics; `step` counts from 1).
public struct AdamWStep: Sendable {
    public var learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    public var step: Int
    /// Multiplies every gradient first (1 / loss scale, times a clipping coefficient).
    public var gradientScale: Float

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01,
                step: Int, gradientScale: Float = 1) {
        (self.learningRate, self.beta1, self.beta2, self.epsilon, self.weightDecay) = (learningRate, beta1, beta2, epsilon, weightDecay)
        (self.step, self.gradientScale) = (step, gradientScale)
    }

    /// lr / (1 - beta1^step) and sqrt(1 - beta2^step), in double as torch computes them.
    var stepSize: Float { Float(Double(learningRate) / (1 - pow(Double(beta1), Double(step)))) }
    var biasCorrection2Sqrt: Float { Float((1 - pow(Double(beta2), Double(step))).squareRoot()) }
}

/// A tensor-descriptor table already on the device, with what the launch grid needs.
public struct DeviceTensorTable: Sendable {
    /// Device address of the table (`AdamWTensor.table` or `CUDAKernels.normTable` words).
    public var address: UInt64
    public var tensorCount: Int
    /// Elements of the largest tensor: sizes the grid.
    public var largestCount: Int

    public init(address: UInt64, tensorCount: Int, largestCount: Int) {
        (self.address, self.tensorCount, self.largestCount) = (address, tensorCount, largestCount)
    }
}

extension CUDAKernels {
    /// One fused AdamW step over every tensor of `table` (built by `AdamWTensor.table`), one launch:
    /// p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    /// p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with g = gradient * gradientScale.
    ///
    ///     let words = AdamWTensor.table(tensors)               // upload once
    ///     try nn.adamW(DeviceTensorTable(address: table.address, tensorCount: tensors.count,
    ///                                    largestCount: tensors.map(\.count).max()!),
    ///                  gradientType: .float32, step: AdamWStep(learningRate: 3e-4, step: iteration), stream: stream)
    public func adamW(_ table: DeviceTensorTable, gradientType: KernelElementType, step: AdamWStep, stream: CUDAStream) throws {
        let kernel = "adamw_" + gradientType.rawValue
        try checkTable(kernel, table)
        try Self.require(step.step >= 1, "\(kernel): step \(step.step) must count from 1")
        guard table.tensorCount > 0, table.largestCount > 0 else { return }
        let blocks = gridStrideBlocks(table.largestCount / 8 + 1)
        try launch("optimizer.cu", kernel, grid: .init(blocks, table.tensorCount), block: Self.elementwiseBlock, stream: stream,
                   [.pointer(table.address), .float32(step.learningRate), .float32(step.beta1), .float32(step.beta2),
                    .float32(step.epsilon), .float32(step.weightDecay), .float32(step.stepSize),
                    .float32(step.biasCorrection2Sqrt), .float32(step.gradientScale)])
    }

    /// The device table `gradNorm` reads: (address, count) words per fp32 tensor.
    public static func normTable(_ tensors: [(address: UInt64, count: Int)]) -> [UInt64] {
        tensors.flatMap { [$0.address, UInt64($0.count)] }
    }

    /// fp32 elements of scratch `gradNorm` needs for `table`.
    public func gradNormScratchCount(_ table: DeviceTensorTable) -> Int {
        2 * table.tensorCount * gradNormBlocks(largestCount: table.largestCount)
    }

    /// Global L2 norm of every fp32 tensor of `table` (built by `normTable`), deterministic in two
    /// passes (fixed per-block partials, then one block summing them in fp64 in order). Writes
    /// two floats at `out`: the norm (inf or NaN when a value is), and 1 if any value is inf or NaN, else 0.
    public func gradNorm(_ out: UInt64, table: DeviceTensorTable, scratch: UInt64, stream: CUDAStream) throws {
        try checkTable("grad_norm_partials", table)
        try Self.requirePointers("grad_norm", ["out": out, "scratch": scratch])
        guard table.tensorCount > 0 else {
            throw CUDAError.invalidArgument("grad_norm: the table holds no tensors")
        }
        let blocks = gradNormBlocks(largestCount: table.largestCount)
        try launch("optimizer.cu", "grad_norm_partials", grid: .init(blocks, table.tensorCount), block: Self.elementwiseBlock,
                   stream: stream, [.pointer(scratch), .pointer(table.address)])
        try launch("optimizer.cu", "grad_norm_final", grid: .init(1), block: .init(1024), stream: stream,
                   [.pointer(out), .pointer(scratch), .int32(Int32(blocks * table.tensorCount))])
    }

    /// Blocks per tensor: one per 4096 elements of the largest tensor, at most 2 per SM.
    private func gradNormBlocks(largestCount: Int) -> Int {
        max(1, min((largestCount + 4095) / 4096, 2 * device.properties.multiprocessorCount))
    }

    private func checkTable(_ kernel: String, _ table: DeviceTensorTable) throws {
        try Self.require(table.tensorCount >= 0 && table.tensorCount <= 65535,
                         "\(kernel): \(table.tensorCount) tensors; one launch takes 0...65535")
        try Self.require(table.largestCount >= 0, "\(kernel): negative largest count \(table.largestCount)")
        if table.tensorCount > 0 { try Self.requirePointers(kernel, ["table": table.address]) }
    }
}
