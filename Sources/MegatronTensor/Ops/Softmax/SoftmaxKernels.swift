import Foundation

extension Ops {
    /// Softmax along the last dimension (`log: true` gives log-softmax).
    public static func softmax(_ x: Tensor, log: Bool = false) -> Tensor {
        if cudaDevice(x, op: "softmax") != nil { return CUDAFusedOps.softmax(x, log: log) }
        let width = x.shape.last ?? 1
        return x.withFloats { src in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                parallelRows(src.count / max(width, 1), width) { row in
                    let s = src.baseAddress! + row * width, o = out.baseAddress! + row * width
                    let lse = logSumExp(s, width)
                    for j in 0..<width { o[j] = log ? s[j] - lse : Foundation.exp(s[j] - lse) }
                }
            }
        }
    }

    /// Backward of softmax (`log: false`, `y` the softmax) or log-softmax (`log: true`, `y` the log-softmax).
    public static func softmaxBackward(_ y: Tensor, gradOutput: Tensor, log: Bool = false) -> Tensor {
        if cudaDevice(y, gradOutput, op: "softmaxBackward") != nil {
            return CUDAFusedOps.softmaxBackward(y, gradOutput: gradOutput, log: log)
        }
        let width = y.shape.last ?? 1
        return y.withFloats { ys in
            gradOutput.withFloats { gs in
                Tensor.computed(shape: y.shape, dtype: gradOutput.dtype) { out in
                    parallelRows(ys.count / max(width, 1), width) { row in
                        let yr = ys.baseAddress! + row * width, g = gs.baseAddress! + row * width
                        let o = out.baseAddress! + row * width
                        if log {
                            var total: Float = 0
                            for j in 0..<width { total += g[j] }
                            for j in 0..<width { o[j] = g[j] - Foundation.exp(yr[j]) * total }
                        } else {
                            var dot: Float = 0
                            for j in 0..<width { dot += g[j] * yr[j] }
                            for j in 0..<width { o[j] = yr[j] * (g[j] - dot) }
                        }
                    }
                }
            }
        }
    }

    /// Per-row cross-entropy of `logits [N, V]` against `labels [N]` without materializing probabilities.
    ///
    /// Returns the loss per row (0 where the label is `ignoreIndex`) and each row's log-sum-exp for the
    /// backward pass. With label smoothing ε the target is `(1 - ε) * onehot + ε / V`, as `torch.nn.functional.cross_entropy`.
    public static func crossEntropy(_ logits: Tensor, labels: Tensor, ignoreIndex: Int = -100,
                                    labelSmoothing: Float = 0) -> (loss: Tensor, logSumExp: Tensor) {
        if cudaDevice(logits, labels, op: "crossEntropy") != nil {
            return CUDAFusedOps.crossEntropy(logits, labels: labels, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
        }
        precondition(logits.rank == 2 && labels.shape == [logits.shape[0]],
                     "crossEntropy wants logits [N, V] and labels [N], got \(logits.shape) and \(labels.shape)")
        let (n, v) = (logits.shape[0], logits.shape[1])
        let ids = labels.ints()
        var lses = [Float](repeating: 0, count: n)
        let loss = logits.withFloats { src in
            Tensor.computed(shape: [n]) { out in
                lses.withUnsafeMutableBufferPointer { lse in
                    parallelRows(n, v) { row in
                        let s = src.baseAddress! + row * v
                        lse[row] = logSumExp(s, v)
                        let label = ids[row]
                        if label == ignoreIndex { out[row] = 0; return }
                        precondition(label >= 0 && label < v, "label \(label) out of range for \(v) classes")
                        var loss = lse[row] - s[label]
                        if labelSmoothing > 0 {
                            var mean: Float = 0
                            for j in 0..<v { mean += s[j] }
                            mean /= Float(v)
                            loss = (1 - labelSmoothing) * loss + labelSmoothing * (lse[row] - mean)
                        }
                        out[row] = loss
                    }
                }
            }
        }
        return (loss, Tensor(shape: [n], values: lses))
    }

    /// Gradient of per-row cross-entropy with respect to the logits, given the per-row loss gradient.
    /// With `overwritingLogits` the GPU kernel writes it over contiguous `logits` (no second vocabulary-sized
    /// tensor, as Megatron's fused cross-entropy): only for logits nothing reads afterwards.
    public static func crossEntropyBackward(_ logits: Tensor, labels: Tensor, logSumExp: Tensor, gradLoss: Tensor,
                                            ignoreIndex: Int = -100, labelSmoothing: Float = 0,
                                            overwritingLogits: Bool = false) -> Tensor {
        if cudaDevice(logits, labels, logSumExp, gradLoss, op: "crossEntropyBackward") != nil {
            return CUDAFusedOps.crossEntropyBackward(logits, labels: labels, logSumExp: logSumExp, gradLoss: gradLoss,
                                                     ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing,
                                                     inPlace: overwritingLogits)
        }
        let (n, v) = (logits.shape[0], logits.shape[1])
        let ids = labels.ints(), lse = logSumExp.floats(), g = gradLoss.floats()
        return logits.withFloats { src in
            Tensor.computed(shape: logits.shape, dtype: logits.dtype) { out in
                parallelRows(n, v) { row in
                    let s = src.baseAddress! + row * v, o = out.baseAddress! + row * v
                    let label = ids[row]
                    if label == ignoreIndex {
                        for j in 0..<v { o[j] = 0 }
                        return
                    }
                    let smooth = labelSmoothing / Float(v)
                    for j in 0..<v { o[j] = g[row] * (Foundation.exp(s[j] - lse[row]) - smooth) }
                    o[label] -= g[row] * (1 - labelSmoothing)
                }
            }
        }
    }

    @inline(__always)
    static func logSumExp(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = -Float.infinity
        for j in 0..<n { m = Swift.max(m, p[j]) }
        if m == -.infinity { return m }
        var s: Float = 0
        for j in 0..<n { s += Foundation.exp(p[j] - m) }
        return m + Foundation.log(s)
    }

    /// Runs `body(row)` for each of `rows` rows of `width` elements, in parallel when the work is large.
    @inline(__always)
    static func parallelRows(_ rows: Int, _ width: Int, _ body: (Int) -> Void) {
        parallelChunks(rows, grain: max(1, 16384 / max(width, 1))) { r in for row in r { body(row) } }
    }
}
