import MegatronCUDA

/// Activations and gated linear units on CUDA tensors (Kernels/Elementwise/activation.cu).
extension CUDAFusedOps {
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
        let gradient = gradOutput.madeContiguous()
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
        let input = x.madeContiguous()
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
        let (input, gradient) = (x.madeContiguous(), gradOutput.madeContiguous())
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        if dx.count == 0 { return dx }
        run("\(unit) backward \(x.dtype) \(x.shape)", on: x.device) { nn, stream in
            try nn.gatedLinearUnitBackward(dx.deviceAddress, gradient: gradient.deviceAddress, input: input.deviceAddress, rows: rows,
                                           half: half, quickGelu: unit.gate == .quickGelu, linearOffset: unit.linearOffset,
                                           clampValue: unit.clampValue, type: type, stream: stream)
        }
        return dx
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
