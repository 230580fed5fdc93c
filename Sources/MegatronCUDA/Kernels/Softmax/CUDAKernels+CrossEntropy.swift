extension CUDAKernels {
    /// Fused softmax cross-entropy over [rows, vocabulary] logits and int64 `labels` (`rows`):
    /// writes the per-row `loss` and `logSumExp` (fp32, `rows` each) without a second
    /// vocabulary-sized tensor. With label smoothing eps,
    /// loss = lse - (1 - eps) * x[label] - eps / V * sum(x), as torch's cross_entropy.
    /// Rows whose label is `ignoreIndex` get loss 0; a label outside [0, V) gives NaN.
    ///
    ///     try nn.crossEntropyForward(loss: loss, logSumExp: lse, logits: logits, labels: labels,
    ///                                rows: tokens, vocabulary: 50304, type: .bfloat16, stream: stream)
    public func crossEntropyForward(loss: UInt64, logSumExp: UInt64, logits: UInt64, labels: UInt64, rows: Int,
                                    vocabulary: Int, ignoreIndex: Int = -100, labelSmoothing: Float = 0,
                                    type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "cross_entropy_forward_" + type.rawValue
        try checkCrossEntropy(kernel, rows: rows, vocabulary: vocabulary, labelSmoothing: labelSmoothing)
        try Self.requirePointers(kernel, ["loss": loss, "logSumExp": logSumExp, "logits": logits, "labels": labels])
        let vectorized = Self.vectorizable(columns: vocabulary, logits)
        try launch("cross_entropy.cu", kernel, grid: .init(rowBlocks(rows)),
                   block: rowBlock(columns: vocabulary, vectorized: vectorized), stream: stream,
                   [.pointer(loss), .pointer(logSumExp), .pointer(logits), .pointer(labels), .int64(Int64(rows)),
                    .int32(Int32(vocabulary)), .int64(Int64(ignoreIndex)), .float32(labelSmoothing), .int32(vectorized ? 1 : 0)])
    }

    /// Backward of `crossEntropyForward`: dlogits = g * (softmax - (1 - eps) * onehot - eps / V),
    /// 0 on ignored rows, with g = gradient[row * gradientStride] (fp32; stride 0 broadcasts one
    /// value, as a mean-reduced loss gives). `dlogits` may alias `logits`.
    public func crossEntropyBackward(_ dlogits: UInt64, gradient: UInt64, gradientStride: Int = 1, logits: UInt64,
                                     logSumExp: UInt64, labels: UInt64, rows: Int, vocabulary: Int, ignoreIndex: Int = -100,
                                     labelSmoothing: Float = 0, type: KernelElementType, stream: CUDAStream) throws {
        let kernel = "cross_entropy_backward_" + type.rawValue
        try checkCrossEntropy(kernel, rows: rows, vocabulary: vocabulary, labelSmoothing: labelSmoothing)
        try Self.requirePointers(kernel, ["dlogits": dlogits, "gradient": gradient, "logits": logits,
                                          "logSumExp": logSumExp, "labels": labels])
        try Self.require(gradientStride >= 0, "\(kernel): gradientStride \(gradientStride) is negative")
        let vectorized = Self.vectorizable(columns: vocabulary, dlogits, logits)
        try launch("cross_entropy.cu", kernel, grid: .init(rowBlocks(rows)),
                   block: rowBlock(columns: vocabulary, vectorized: vectorized, backward: true), stream: stream,
                   [.pointer(dlogits), .pointer(gradient), .int64(Int64(gradientStride)), .pointer(logits), .pointer(logSumExp),
                    .pointer(labels), .int64(Int64(rows)), .int32(Int32(vocabulary)), .int64(Int64(ignoreIndex)),
                    .float32(labelSmoothing), .int32(vectorized ? 1 : 0)])
    }

    private func checkCrossEntropy(_ kernel: String, rows: Int, vocabulary: Int, labelSmoothing: Float) throws {
        try Self.requireShape(kernel, rows: rows, columns: vocabulary)
        try Self.require(labelSmoothing >= 0 && labelSmoothing <= 1, "\(kernel): label smoothing \(labelSmoothing) outside [0, 1]")
    }
}
