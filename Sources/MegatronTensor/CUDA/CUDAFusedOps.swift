import MegatronCUDA

/// The fused `Ops` (softmax, norms, cross-entropy, dropout) on CUDA tensors through MegatronCUDA's
/// NeuralKernels. Each returns nil where those kernels do not apply (a dtype they lack, operands of
/// different dtypes); `Ops` then runs the CPU implementation on host copies, which is correct but slow.
enum CUDAFusedOps {
    static func softmax(_ x: Tensor, log: Bool) -> Tensor? {
        guard x.rank >= 1, x.count > 0, let type = x.dtype.kernelElementType else { return nil }
        let width = x.shape[x.rank - 1]
        let input = x.contiguous()
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        run("softmax", on: x.device) { nn, stream in
            try nn.softmaxForward(out.deviceAddress, input: input.deviceAddress, rows: x.count / width, columns: width,
                                  log: log, type: type, stream: stream)
        }
        return out
    }

    static func softmaxBackward(_ y: Tensor, gradOutput: Tensor, log: Bool) -> Tensor? {
        guard y.rank >= 1, y.count > 0, y.dtype == gradOutput.dtype, let type = y.dtype.kernelElementType else { return nil }
        let width = y.shape[y.rank - 1]
        let (output, gradient) = (y.contiguous(), gradOutput.contiguous())
        let dx = Tensor.empty(y.shape, dtype: gradOutput.dtype, device: y.device)
        run("softmaxBackward", on: y.device) { nn, stream in
            try nn.softmaxBackward(dx.deviceAddress, gradient: gradient.deviceAddress, output: output.deviceAddress,
                                   rows: y.count / width, columns: width, log: log, type: type, stream: stream)
        }
        return dx
    }

    static func crossEntropy(_ logits: Tensor, labels: Tensor, ignoreIndex: Int, labelSmoothing: Float) -> (loss: Tensor, logSumExp: Tensor)? {
        guard logits.rank == 2, logits.count > 0, let type = logits.dtype.kernelElementType else { return nil }
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (input, ids) = (logits.contiguous(), labels.cast(to: .int64).contiguous())
        let loss = Tensor.empty([rows], dtype: .float32, device: logits.device)
        let lse = Tensor.empty([rows], dtype: .float32, device: logits.device)
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
                                     ignoreIndex: Int, labelSmoothing: Float, inPlace: Bool) -> Tensor? {
        guard logits.rank == 2, logits.count > 0, let type = logits.dtype.kernelElementType else { return nil }
        let (rows, vocabulary) = (logits.shape[0], logits.shape[1])
        let (input, ids) = (logits.contiguous(), labels.cast(to: .int64).contiguous())
        let (lse, g) = (logSumExp.cast(to: .float32).contiguous(), gradLoss.cast(to: .float32).contiguous())
        let dlogits = inPlace && logits.isContiguous ? logits : Tensor.empty(logits.shape, dtype: logits.dtype, device: logits.device)
        run("crossEntropyBackward", on: logits.device) { nn, stream in
            try nn.crossEntropyBackward(dlogits.deviceAddress, gradient: g.deviceAddress, gradientStride: g.count == 1 ? 0 : 1,
                                        logits: input.deviceAddress, logSumExp: lse.deviceAddress, labels: ids.deviceAddress,
                                        rows: rows, vocabulary: vocabulary, ignoreIndex: ignoreIndex,
                                        labelSmoothing: labelSmoothing, type: type, stream: stream)
        }
        return dlogits
    }

    /// Inverted dropout drawing the same Philox numbers as the CPU, element for element.
    static func dropout(_ x: Tensor, p: Float, seed: UInt64, offset: UInt64) -> Tensor? {
        guard let type = x.dtype.kernelElementType else { return nil }
        let input = x.contiguous()
        let out = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
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

    static func gatedLinearUnit(_ x: Tensor, _ unit: GatedLinearUnit) -> Tensor? {
        guard x.isContiguous, let type = x.dtype.kernelElementType, x.count > 0 else { return nil }
        let half = x.shape.last! / 2, rows = x.count / (2 * half)
        let out = Tensor.empty(Array(x.shape.dropLast()) + [half], dtype: x.dtype, device: x.device)
        run("\(unit) \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.gatedLinearUnitForward(out.deviceAddress, input: x.deviceAddress, rows: rows, half: half,
                                          quickGelu: unit.gate == .quickGelu, linearOffset: unit.linearOffset,
                                          clampValue: unit.clampValue, type: type, stream: stream)
        }
        return out
    }

    static func gatedLinearUnitBackward(_ x: Tensor, gradOutput: Tensor, _ unit: GatedLinearUnit) -> Tensor? {
        guard x.isContiguous, x.dtype == gradOutput.dtype, let type = x.dtype.kernelElementType, x.count > 0 else { return nil }
        let half = x.shape.last! / 2, rows = x.count / (2 * half)
        let gradient = gradOutput.contiguous()
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        run("\(unit) backward \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.gatedLinearUnitBackward(dx.deviceAddress, gradient: gradient.deviceAddress, input: x.deviceAddress, rows: rows,
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

    static func run(_ op: String, on device: Device, _ body: (NeuralKernels, CUDAStream) throws -> Void) {
        let context = CUDAContext.of(device)
        context.run("fused \(op)") { try body(try context.neural(), context.stream) }
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
    /// The NeuralKernels element type of this dtype, if those kernels take it.
    var kernelElementType: KernelElementType? {
        switch self {
        case .float32: .float32
        case .bfloat16: .bfloat16
        case .float16: .float16
        default: nil
        }
    }
}
