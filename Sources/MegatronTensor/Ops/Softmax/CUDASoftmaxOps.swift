import MegatronCUDA

/// Softmax and cross-entropy on CUDA tensors (Kernels/Softmax, Kernels/CrossEntropy).
extension CUDAFusedOps {
    static func softmax(_ x: Tensor, log: Bool) -> Tensor {
        guard let type = x.dtype.kernelElementType else { return softmax(x.cast(to: .float32), log: log).cast(to: x.dtype) }
        let width = x.shape.last ?? 1
        let input = x.madeContiguous()
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if x.count == 0 { return out }
        run("softmax", on: x.device) { nn, stream in
            try nn.softmaxForward(out.deviceAddress, input: input.deviceAddress, rows: x.count / width, columns: width,
                                  log: log, type: type, stream: stream)
        }
        return out
    }

    static func softmaxBackward(_ y: Tensor, gradOutput: Tensor, log: Bool) -> Tensor {
        guard y.dtype == gradOutput.dtype, let type = y.dtype.kernelElementType else {
            return softmaxBackward(y.cast(to: .float32), gradOutput: gradOutput.cast(to: .float32), log: log)
                .cast(to: gradOutput.dtype)
        }
        let width = y.shape.last ?? 1
        let (output, gradient) = (y.madeContiguous(), gradOutput.madeContiguous())
        let dx = Tensor.empty(y.shape, dtype: gradOutput.dtype, device: y.device)
        if y.count == 0 { return dx }
        run("softmaxBackward", on: y.device) { nn, stream in
            try nn.softmaxBackward(dx.deviceAddress, gradient: gradient.deviceAddress, output: output.deviceAddress,
                                   rows: y.count / width, columns: width, log: log, type: type, stream: stream)
        }
        return dx
    }

    static func crossEntropy(_ logits: Tensor, labels: Tensor, ignoreIndex: Int, labelSmoothing: Float) -> (loss: Tensor, logSumExp: Tensor) {
        precondition(logits.rank == 2 && labels.shape == [logits.shape[0]],
                     "crossEntropy wants logits [N, V] and labels [N], got \(logits.shape) and \(labels.shape)")
        guard let type = logits.dtype.kernelElementType else {
            return crossEntropy(logits.cast(to: .float32), labels: labels, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
        }
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (input, ids) = (logits.madeContiguous(), labels.cast(to: .int64).madeContiguous())
        let loss = Tensor.empty([rows], dtype: .float32, device: logits.device)
        let lse = Tensor.empty([rows], dtype: .float32, device: logits.device)
        if logits.count == 0 { return (loss, lse) }
        run("crossEntropy", on: logits.device) { nn, stream in
            try nn.crossEntropyForward(loss: loss.deviceAddress, logSumExp: lse.deviceAddress, logits: input.deviceAddress,
                                       labels: ids.deviceAddress, rows: rows, vocabulary: vocabulary, ignoreIndex: ignoreIndex,
                                       labelSmoothing: labelSmoothing, type: type, stream: stream)
        }
        return (loss, lse)
    }

    /// `inPlace`: the gradient goes over `logits` when they are contiguous (each element is read, then
    /// written, by the same thread).
    static func crossEntropyBackward(_ logits: Tensor, labels: Tensor, logSumExp: Tensor, gradLoss: Tensor,
                                     ignoreIndex: Int, labelSmoothing: Float, inPlace: Bool) -> Tensor {
        precondition(logits.rank == 2, "crossEntropyBackward wants logits [N, V], got \(logits.shape)")
        guard let type = logits.dtype.kernelElementType else {
            return crossEntropyBackward(logits.cast(to: .float32), labels: labels, logSumExp: logSumExp, gradLoss: gradLoss,
                                        ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing, inPlace: false)
                .cast(to: logits.dtype)
        }
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (input, ids) = (logits.madeContiguous(), labels.cast(to: .int64).madeContiguous())
        let (lse, g) = (logSumExp.cast(to: .float32).madeContiguous(), gradLoss.cast(to: .float32).madeContiguous())
        let dlogits = inPlace && logits.isContiguous ? logits : Tensor.empty(logits.shape, dtype: logits.dtype, device: logits.device)
        if logits.count == 0 { return dlogits }
        run("crossEntropyBackward", on: logits.device) { nn, stream in
            try nn.crossEntropyBackward(dlogits.deviceAddress, gradient: g.deviceAddress, gradientStride: g.count == 1 ? 0 : 1,
                                        logits: input.deviceAddress, logSumExp: lse.deviceAddress, labels: ids.deviceAddress,
                                        rows: rows, vocabulary: vocabulary, ignoreIndex: ignoreIndex,
                                        labelSmoothing: labelSmoothing, type: type, stream: stream)
        }
        return dlogits
    }
}
