extension Ops {
    /// Layer norm over the last dimension. Returns the output and, per row, the mean and 1/std the backward needs.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float)
        -> (output: Tensor, mean: Tensor, rstd: Tensor)
    {
        if cudaDevice(x, weight, bias, op: "layerNorm") != nil {
            if let r = CUDAFusedOps.layerNorm(x, weight: weight, bias: bias, epsilon: epsilon) { return (r.output, r.mean, r.rstd) }
            // Rows wider than the fused kernel holds, mixed dtypes, fp8: the general path on the device.
            let r = ComposedNorms.forward(x, weight: weight, bias: bias, epsilon: epsilon, centered: true)
            return (r.output, r.mean!, r.rstd)
        }
        let width = x.shape.last!, rows = x.count / width
        var means = [Float](repeating: 0, count: rows), rstds = [Float](repeating: 0, count: rows)
        let w = weight?.floats(), b = bias?.floats()
        let out = x.withFloats { src in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                means.withUnsafeMutableBufferPointer { mp in
                    rstds.withUnsafeMutableBufferPointer { rp in
                        parallelRows(rows, width) { row in
                            let s = src.baseAddress! + row * width, o = out.baseAddress! + row * width
                            var mean: Float = 0
                            for j in 0..<width { mean += s[j] }
                            mean /= Float(width)
                            var variance: Float = 0
                            for j in 0..<width { variance += (s[j] - mean) * (s[j] - mean) }
                            let rstd = 1 / (variance / Float(width) + epsilon).squareRoot()
                            mp[row] = mean
                            rp[row] = rstd
                            for j in 0..<width {
                                o[j] = (s[j] - mean) * rstd * (w?[j] ?? 1) + (b?[j] ?? 0)
                            }
                        }
                    }
                }
            }
        }
        return (out, Tensor(shape: [rows], values: means), Tensor(shape: [rows], values: rstds))
    }

    /// Backward of layer norm: gradients for x, weight and bias (the last two summed over rows).
    public static func layerNormBackward(_ gradOutput: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor?)
        -> (gradInput: Tensor, gradWeight: Tensor, gradBias: Tensor)
    {
        if cudaDevice(gradOutput, x, mean, rstd, weight, op: "layerNormBackward") != nil {
            if let r = CUDAFusedOps.layerNormBackward(gradOutput, x: x, mean: mean, rstd: rstd, weight: weight) {
                return (r.gradInput, r.gradWeight, r.gradBias)
            }
            return ComposedNorms.backward(gradOutput, x: x, mean: mean, rstd: rstd, weight: weight)
        }
        return normBackward(gradOutput, x: x, mean: mean.floats(), rstd: rstd.floats(), weight: weight)
    }

    /// RMS norm over the last dimension: `x / sqrt(mean(x^2) + eps) * weight`. Returns 1/rms per row too.
    public static func rmsNorm(_ x: Tensor, weight: Tensor?, epsilon: Float) -> (output: Tensor, rstd: Tensor) {
        if cudaDevice(x, weight, op: "rmsNorm") != nil {
            if let r = CUDAFusedOps.rmsNorm(x, weight: weight, epsilon: epsilon) { return (r.output, r.rstd) }
            // Rows wider than the fused kernel holds, mixed dtypes, fp8: the general path on the device.
            let r = ComposedNorms.forward(x, weight: weight, bias: nil, epsilon: epsilon, centered: false)
            return (r.output, r.rstd)
        }
        let width = x.shape.last!, rows = x.count / width
        var rstds = [Float](repeating: 0, count: rows)
        let w = weight?.floats()
        let out = x.withFloats { src in
            Tensor.computed(shape: x.shape, dtype: x.dtype) { out in
                rstds.withUnsafeMutableBufferPointer { rp in
                    parallelRows(rows, width) { row in
                        let s = src.baseAddress! + row * width, o = out.baseAddress! + row * width
                        var squares: Float = 0
                        for j in 0..<width { squares += s[j] * s[j] }
                        let rstd = 1 / (squares / Float(width) + epsilon).squareRoot()
                        rp[row] = rstd
                        for j in 0..<width { o[j] = s[j] * rstd * (w?[j] ?? 1) }
                    }
                }
            }
        }
        return (out, Tensor(shape: [rows], values: rstds))
    }

    /// Backward of RMS norm: gradients for x and weight.
    public static func rmsNormBackward(_ gradOutput: Tensor, x: Tensor, rstd: Tensor, weight: Tensor?)
        -> (gradInput: Tensor, gradWeight: Tensor)
    {
        if cudaDevice(gradOutput, x, rstd, weight, op: "rmsNormBackward") != nil {
            if let r = CUDAFusedOps.rmsNormBackward(gradOutput, x: x, rstd: rstd, weight: weight) { return (r.gradInput, r.gradWeight) }
            let r = ComposedNorms.backward(gradOutput, x: x, mean: nil, rstd: rstd, weight: weight)
            return (r.gradInput, r.gradWeight)
        }
        let rows = x.count / x.shape.last!
        let r = normBackward(gradOutput, x: x, mean: [Float](repeating: .nan, count: rows),
                             rstd: rstd.floats(), weight: weight)
        return (r.gradInput, r.gradWeight)
    }

    /// Shared backward of layer norm and RMS norm; a NaN mean marks RMS norm (no centering).
    private static func normBackward(_ gradOutput: Tensor, x: Tensor, mean: [Float], rstd: [Float], weight: Tensor?)
        -> (gradInput: Tensor, gradWeight: Tensor, gradBias: Tensor)
    {
        let width = x.shape.last!, rows = x.count / width
        let w = weight?.floats()
        var gw = [Float](repeating: 0, count: width), gb = [Float](repeating: 0, count: width)
        let gx = x.withFloats { xs in
            gradOutput.withFloats { gs in
                Tensor.computed(shape: x.shape, dtype: gradOutput.dtype) { out in
                    for row in 0..<rows {
                        let s = xs.baseAddress! + row * width, g = gs.baseAddress! + row * width
                        let o = out.baseAddress! + row * width
                        let centered = !mean[row].isNaN
                        let mu = centered ? mean[row] : 0
                        var sumG: Float = 0, sumGX: Float = 0
                        for j in 0..<width {
                            let xhat = (s[j] - mu) * rstd[row]
                            let gy = g[j] * (w?[j] ?? 1)
                            sumG += gy
                            sumGX += gy * xhat
                            gw[j] += g[j] * xhat
                            gb[j] += g[j]
                        }
                        let n = Float(width)
                        for j in 0..<width {
                            let xhat = (s[j] - mu) * rstd[row]
                            let gy = g[j] * (w?[j] ?? 1)
                            o[j] = rstd[row] * (gy - (centered ? sumG / n : 0) - xhat * sumGX / n)
                        }
                    }
                }
            }
        }
        let pdtype = weight?.dtype ?? x.dtype
        return (gx, Tensor(shape: [width], values: gw, dtype: pdtype), Tensor(shape: [width], values: gb, dtype: pdtype))
    }
}
