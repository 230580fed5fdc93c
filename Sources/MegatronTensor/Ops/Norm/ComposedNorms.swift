/// Layer norm and RMS norm composed of elementwise ops and row reductions in fp32, on the tensors'
/// device: the general GPU path where the fused norm kernels do not apply (rows wider than
/// `CUDAKernels.normMaxColumns`, operands of different dtypes, a dtype they lack). Results have the
/// CPU kernels' dtypes and agree with them up to fp32 summation order.
enum ComposedNorms {
    /// The normalized `x` (x's dtype), and per row fp32 the mean (nil for RMS norm) and 1/std. `centered`:
    /// layer norm (subtracts the mean); else RMS norm.
    static func forward(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float, centered: Bool)
        -> (output: Tensor, mean: Tensor?, rstd: Tensor)
    {
        let (rows, width) = rowsAndWidth(x)
        let xs = float32Rows(x, rows, width)
        let mean = centered ? Ops.reduce(xs, dims: [1], keepDim: true, .mean) : nil
        let deviations = mean.map { Ops.binary(xs, $0, .sub) } ?? xs
        let variance = Ops.reduce(Ops.binary(deviations, deviations, .mul), dims: [1], keepDim: true, .mean)
        let rstd = Ops.binary(Tensor(scalar: 1), Ops.unary(Ops.binary(variance, Tensor(scalar: epsilon), .add), .sqrt), .div)
        var y = Ops.binary(deviations, rstd, .mul)
        if let weight { y = Ops.binary(y, weight.cast(to: .float32), .mul) }
        if let bias { y = Ops.binary(y, bias.cast(to: .float32), .add) }
        return (y.cast(to: x.dtype).reshaped(x.shape), mean?.reshaped([rows]), rstd.reshaped([rows]))
    }

    /// Gradients of `forward` for x (gradOutput's dtype), weight and bias (summed over rows, in the
    /// weight's dtype, else x's). `mean` nil: RMS norm.
    static func backward(_ gradOutput: Tensor, x: Tensor, mean: Tensor?, rstd: Tensor, weight: Tensor?)
        -> (gradInput: Tensor, gradWeight: Tensor, gradBias: Tensor)
    {
        let (rows, width) = rowsAndWidth(x)
        let (xs, g) = (float32Rows(x, rows, width), float32Rows(gradOutput, rows, width))
        let r = rstd.cast(to: .float32).reshaped([rows, 1])
        let deviations = mean.map { Ops.binary(xs, $0.cast(to: .float32).reshaped([rows, 1]), .sub) } ?? xs
        let normalized = Ops.binary(deviations, r, .mul)
        let gy = weight.map { Ops.binary(g, $0.cast(to: .float32), .mul) } ?? g
        // dx = rstd * (gy - mean(gy) - xhat * mean(gy * xhat)), the mean(gy) term for layer norm only.
        let projection = Ops.reduce(Ops.binary(gy, normalized, .mul), dims: [1], keepDim: true, .mean)
        var dx = Ops.binary(gy, Ops.binary(normalized, projection, .mul), .sub)
        if mean != nil { dx = Ops.binary(dx, Ops.reduce(gy, dims: [1], keepDim: true, .mean), .sub) }
        dx = Ops.binary(dx, r, .mul)
        let parameterType = weight?.dtype ?? x.dtype
        let gradWeight = Ops.reduce(Ops.binary(g, normalized, .mul), dims: [0], .sum).cast(to: parameterType)
        let gradBias = Ops.reduce(g, dims: [0], .sum).cast(to: parameterType)
        return (dx.cast(to: gradOutput.dtype).reshaped(x.shape), gradWeight, gradBias)
    }

    private static func rowsAndWidth(_ x: Tensor) -> (rows: Int, width: Int) {
        let width = x.shape.last!
        return (x.count / width, width)
    }

    /// `x` as contiguous fp32 `[rows, width]`.
    private static func float32Rows(_ x: Tensor, _ rows: Int, _ width: Int) -> Tensor {
        x.cast(to: .float32).madeContiguous().reshaped([rows, width])
    }
}
