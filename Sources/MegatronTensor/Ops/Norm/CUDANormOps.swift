import MegatronCUDA

/// Layer norm and RMS norm on CUDA tensors (norm.cu), optionally fused with the residual add before
/// them. Each returns nil where the kernels do not apply (a dtype they lack, operands of different
/// dtypes, rows wider than `CUDAKernels.normMaxColumns`); `Ops` then takes `ComposedNorms` on the device.
extension CUDAFusedOps {
    /// The norm's row layout when the kernels take these operands: `rowsLike` of x's shape, `parameters`
    /// of its width, all of its dtype.
    static func normShape(_ x: Tensor, rowsLike: [Tensor?], parameters: [Tensor?]) -> (KernelElementType, Int, Int)? {
        guard let shape = rowShape(x, sameType: rowsLike + parameters), shape.1 <= CUDAKernels.normMaxColumns,
              rowsLike.allSatisfy({ $0 == nil || $0!.shape == x.shape }) else { return nil }
        return shape
    }

    /// Layer norm of `x`, or of `x + residual` (returned as `sum`) when a residual is given, the residual
    /// dropped first by `residualDropout`.
    static func layerNorm(_ x: Tensor, residual: Tensor? = nil, residualDropout: DropoutDraw? = nil, weight: Tensor?, bias: Tensor?,
                          epsilon: Float) -> (output: Tensor, sum: Tensor?, mean: Tensor, rstd: Tensor)?
    {
        guard let (type, width, rows) = normShape(x, rowsLike: [residual], parameters: [weight, bias]) else { return nil }
        let (input, r) = (x.madeContiguous(), residual?.madeContiguous())
        let w = (weight ?? Tensor.ones([width], dtype: x.dtype, device: x.device)).madeContiguous()
        let b = bias?.madeContiguous()
        let y = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        let sum = residual.map { _ in Tensor.empty(x.shape, dtype: x.dtype, device: x.device) }
        let mean = Tensor.empty([rows], dtype: .float32, device: x.device)
        let rstd = Tensor.empty([rows], dtype: .float32, device: x.device)
        run(residual == nil ? "layerNorm" : "addLayerNorm", on: x.device) { nn, stream in
            try nn.layerNormForward(y.deviceAddress, mean: mean.deviceAddress, rstd: rstd.deviceAddress, input: input.deviceAddress,
                                    weight: w.deviceAddress, bias: b?.deviceAddress ?? 0, residual: r?.deviceAddress ?? 0,
                                    sum: sum?.deviceAddress ?? 0, residualDropout: residualDropout, rows: rows, columns: width,
                                    epsilon: epsilon, type: type, stream: stream)
        }
        return (y, sum, mean, rstd)
    }

    /// Layer norm backward; with `gradSum` (the gradient that reached the norm's input directly) added to the input
    /// gradient, and with `residualDropout` (the forward's draw; needs `gradSum`) also the dropped residual's gradient,
    /// the input gradient dropped by that draw (nil without it).
    static func layerNormBackward(_ gradOutput: Tensor, gradSum: Tensor? = nil, residualDropout: DropoutDraw? = nil, x: Tensor,
                                  mean: Tensor, rstd: Tensor, weight: Tensor?)
        -> (gradInput: Tensor, gradResidual: Tensor?, gradWeight: Tensor, gradBias: Tensor)?
    {
        guard let (type, width, rows) = normShape(x, rowsLike: [gradOutput, gradSum], parameters: [weight]) else { return nil }
        let (input, gradient, direct) = (x.madeContiguous(), gradOutput.madeContiguous(), gradSum?.madeContiguous())
        let w = (weight ?? Tensor.ones([width], dtype: x.dtype, device: x.device)).madeContiguous()
        let (m, r) = (mean.cast(to: .float32).madeContiguous(), rstd.cast(to: .float32).madeContiguous())
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        let dw = Tensor.empty([width], dtype: x.dtype, device: x.device)
        let db = Tensor.empty([width], dtype: x.dtype, device: x.device)
        let dr = residualGradient(residualDropout, like: x)
        run(gradSum == nil ? "layerNormBackward" : "addLayerNormBackward", on: x.device) { nn, stream in
            let scratch = Tensor.empty([nn.normBackwardScratchCount(rows: rows, columns: width, withBias: true)],
                                       dtype: .float32, device: x.device)
            try nn.layerNormBackward(dx.deviceAddress, weightGradient: dw.deviceAddress, biasGradient: db.deviceAddress,
                                     gradient: gradient.deviceAddress, sumGradient: direct?.deviceAddress ?? 0,
                                     residualGradient: dr?.deviceAddress ?? 0, residualDropout: residualDropout,
                                     input: input.deviceAddress, weight: w.deviceAddress, mean: m.deviceAddress,
                                     rstd: r.deviceAddress, rows: rows, columns: width, scratch: scratch.deviceAddress,
                                     type: type, stream: stream)
        }
        return (dx, dr, dw, db)
    }

    /// RMS norm of `x`, or of `x + residual` (returned as `sum`) when a residual is given, the residual
    /// dropped first by `residualDropout`.
    static func rmsNorm(_ x: Tensor, residual: Tensor? = nil, residualDropout: DropoutDraw? = nil, weight: Tensor?, epsilon: Float)
        -> (output: Tensor, sum: Tensor?, rstd: Tensor)?
    {
        guard let (type, width, rows) = normShape(x, rowsLike: [residual], parameters: [weight]) else { return nil }
        let (input, r) = (x.madeContiguous(), residual?.madeContiguous())
        let w = (weight ?? Tensor.ones([width], dtype: x.dtype, device: x.device)).madeContiguous()
        let y = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        let sum = residual.map { _ in Tensor.empty(x.shape, dtype: x.dtype, device: x.device) }
        let rstd = Tensor.empty([rows], dtype: .float32, device: x.device)
        run(residual == nil ? "rmsNorm" : "addRMSNorm", on: x.device) { nn, stream in
            try nn.rmsNormForward(y.deviceAddress, rstd: rstd.deviceAddress, input: input.deviceAddress, weight: w.deviceAddress,
                                  residual: r?.deviceAddress ?? 0, sum: sum?.deviceAddress ?? 0, residualDropout: residualDropout,
                                  rows: rows, columns: width, epsilon: epsilon, type: type, stream: stream)
        }
        return (y, sum, rstd)
    }

    /// RMS norm backward; with `gradSum` and `residualDropout` as in `layerNormBackward`.
    static func rmsNormBackward(_ gradOutput: Tensor, gradSum: Tensor? = nil, residualDropout: DropoutDraw? = nil, x: Tensor,
                                rstd: Tensor, weight: Tensor?) -> (gradInput: Tensor, gradResidual: Tensor?, gradWeight: Tensor)?
    {
        guard let (type, width, rows) = normShape(x, rowsLike: [gradOutput, gradSum], parameters: [weight]) else { return nil }
        let (input, gradient, direct) = (x.madeContiguous(), gradOutput.madeContiguous(), gradSum?.madeContiguous())
        let w = (weight ?? Tensor.ones([width], dtype: x.dtype, device: x.device)).madeContiguous()
        let r = rstd.cast(to: .float32).madeContiguous()
        let dx = Tensor.empty(x.shape, dtype: x.dtype, device: x.device)
        let dw = Tensor.empty([width], dtype: x.dtype, device: x.device)
        let dr = residualGradient(residualDropout, like: x)
        run(gradSum == nil ? "rmsNormBackward" : "addRMSNormBackward", on: x.device) { nn, stream in
            let scratch = Tensor.empty([nn.normBackwardScratchCount(rows: rows, columns: width, withBias: false)],
                                       dtype: .float32, device: x.device)
            try nn.rmsNormBackward(dx.deviceAddress, weightGradient: dw.deviceAddress, gradient: gradient.deviceAddress,
                                   sumGradient: direct?.deviceAddress ?? 0, residualGradient: dr?.deviceAddress ?? 0,
                                   residualDropout: residualDropout, input: input.deviceAddress,
                                   weight: w.deviceAddress, rstd: r.deviceAddress, rows: rows, columns: width,
                                   scratch: scratch.deviceAddress, type: type, stream: stream)
        }
        return (dx, dr, dw)
    }

    /// The residual gradient a fused dropout backward writes: a tensor like `x` with `dropout`, else none.
    private static func residualGradient(_ dropout: DropoutDraw?, like x: Tensor) -> Tensor? {
        dropout.map { _ in Tensor.empty(x.shape, dtype: x.dtype, device: x.device) }
    }
}
