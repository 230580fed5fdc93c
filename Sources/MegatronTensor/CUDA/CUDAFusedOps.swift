import MegatronCUDA

/// The fused `Ops` (softmax, norms, cross-entropy, dropout) on CUDA tensors through MegatronCUDA's
/// CUDAKernels. Softmax, cross-entropy and dropout take every dtype: one the kernels lack (fp8, integers)
/// or operands of different dtypes run the fp32 kernel on fp32 casts made on the device, with the result
/// rounded once to its dtype, as the CPU computes. The norms and activations return nil where their
/// kernels do not apply; `Ops` then takes its general device path.
enum CUDAFusedOps {
    static func softmax(_ x: Tensor, log: Bool) -> Tensor {
        guard let type = x.dtype.kernelElementType else { return softmax(x.cast(to: .float32), log: log).cast(to: x.dtype) }
        let width = x.shape.last ?? 1
        let input = x.contiguous()
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
        let (output, gradient) = (y.contiguous(), gradOutput.contiguous())
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
        let (input, ids) = (logits.contiguous(), labels.cast(to: .int64).contiguous())
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
        let (input, ids) = (logits.contiguous(), labels.cast(to: .int64).contiguous())
        let (lse, g) = (logSumExp.cast(to: .float32).contiguous(), gradLoss.cast(to: .float32).contiguous())
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

    /// Inverted dropout drawing the same Philox numbers as the CPU, element for element.
    static func dropout(_ x: Tensor, p: Float, seed: UInt64, offset: UInt64) -> Tensor {
        guard let type = x.dtype.kernelElementType else {
            return dropout(x.cast(to: .float32), p: p, seed: seed, offset: offset).cast(to: x.dtype)
        }
        let input = x.contiguous()
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if x.count == 0 { return out }
        run("dropout", on: x.device) { nn, stream in
            try nn.dropout(out.deviceAddress, input: input.deviceAddress, count: x.count, probability: p, seed: seed,
                           offset: offset, type: type, stream: stream)
        }
        return out
    }

    /// GeLU / SiLU through the vectorized activation kernels, for contiguous 16- and 32-bit floats.
    static func activation(_ x: Tensor, _ op: UnaryOp) -> Tensor? {
        guard let activation = op.activation, x.isContiguous, let type = x.dtype.kernelElementType else { return nil }
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        run("\(op) \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.activationForward(activation, out: out.deviceAddress, input: x.deviceAddress, count: x.count, type: type,
                                     stream: stream)
        }
        return out
    }

    static func activationBackward(_ x: Tensor, gradOutput: Tensor, _ op: UnaryOp) -> Tensor? {
        guard let activation = op.activation, x.dtype == gradOutput.dtype, let type = x.dtype.kernelElementType,
              x.isContiguous else { return nil }
        let gradient = gradOutput.contiguous()
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        run("\(op) backward \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.activationBackward(activation, dx: dx.deviceAddress, gradient: gradient.deviceAddress, input: x.deviceAddress,
                                      count: x.count, type: type, stream: stream)
        }
        return dx
    }

    /// A dtype the kernel lacks (fp8) runs the fp32 kernel on an fp32 cast, rounded once to x's dtype.
    static func gatedLinearUnit(_ x: Tensor, _ unit: GatedLinearUnit) -> Tensor {
        guard let type = x.dtype.kernelElementType else { return gatedLinearUnit(x.cast(to: .float32), unit).cast(to: x.dtype) }
        let half = x.shape.last! / 2, rows = x.count / max(2 * half, 1)
        let input = x.contiguous()
        let out = Tensor.empty(Array(x.shape.dropLast()) + [half], dtype: x.dtype, device: x.device)
        if out.count == 0 { return out }
        run("\(unit) \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.gatedLinearUnitForward(out.deviceAddress, input: input.deviceAddress, rows: rows, half: half,
                                          quickGelu: unit.gate == .quickGelu, linearOffset: unit.linearOffset,
                                          clampValue: unit.clampValue, type: type, stream: stream)
        }
        return out
    }

    /// The gradient in x's dtype; operands of different dtypes, or one the kernel lacks, run the fp32
    /// kernel on fp32 casts.
    static func gatedLinearUnitBackward(_ x: Tensor, gradOutput: Tensor, _ unit: GatedLinearUnit) -> Tensor {
        guard x.dtype == gradOutput.dtype, let type = x.dtype.kernelElementType else {
            return gatedLinearUnitBackward(x.cast(to: .float32), gradOutput: gradOutput.cast(to: .float32), unit).cast(to: x.dtype)
        }
        let half = x.shape.last! / 2, rows = x.count / max(2 * half, 1)
        let (input, gradient) = (x.contiguous(), gradOutput.contiguous())
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if dx.count == 0 { return dx }
        run("\(unit) backward \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.gatedLinearUnitBackward(dx.deviceAddress, gradient: gradient.deviceAddress, input: input.deviceAddress, rows: rows,
                                           half: half, quickGelu: unit.gate == .quickGelu, linearOffset: unit.linearOffset,
                                           clampValue: unit.clampValue, type: type, stream: stream)
        }
        return dx
    }

    /// Element type, row width and row count of a row kernel over `x`, when every given tensor shares x's dtype.
    static func rowShape(_ x: Tensor, sameType others: [Tensor?]) -> (KernelElementType, Int, Int)? {
        guard x.rank >= 1, x.count > 0, let type = x.dtype.kernelElementType,
              others.allSatisfy({ $0 == nil || $0!.dtype == x.dtype }) else { return nil }
        let width = x.shape[x.rank - 1]
        return (type, width, x.count / width)
    }

    static func run(_ op: String, on device: Device, _ body: (CUDAKernels, CUDAStream) throws -> Void) {
        let context = CUDAContext.of(device)
        context.run("fused \(op)") { try body(context.kernels, context.stream) }
    }
}

extension UnaryOp {
    /// The activation kernel computing this op, if there is one.
    var activation: Activation? {
        switch self {
        case .geluTanh: .geluTanh
        case .geluErf: .geluErf
        case .silu: .silu
        default: nil
        }
    }
}

extension DType {
    /// The CUDAKernels element type of this dtype, if those kernels take it.
    var kernelElementType: KernelElementType? {
        switch self {
        case .float32: .float32
        case .bfloat16: .bfloat16
        case .float16: .float16
        default: nil
        }
    }
}
