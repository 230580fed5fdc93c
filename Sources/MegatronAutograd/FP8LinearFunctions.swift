import MegatronTensor

extension Functional {
    /// `linear(x, weight, bias)` with its three GEMMs in FP8, as Transformer Engine's linear layers under
    /// `fp8_autocast`: forward x · Wᵀ from the quantized input and weight, backward dgrad dY · W and wgrad
    /// dYᵀ · X from the quantized output gradient (in the layer's precision under `--no-fp8-wgrad`), each accumulated
    /// in fp32 (`Ops.fp8Matmul`). Backward keeps the fp8 input and weight (their transposed copies, which is what its
    /// GEMMs read), not the high-precision ones. The bias is added and its gradient summed in
    /// the layer's precision. With `activation`, the layer's input is `activation(x)`, computed here and
    /// differentiated here (the MLP's `linear_fc2`).
    ///
    /// ```swift
    /// let y = Functional.fp8Linear(x, weight: w, bias: b, quantizer: scaling)   // x [..., in], w [out, in]
    /// ```
    public static func fp8Linear(_ x: Tensor, activation: RecomputedActivation? = nil, weight: Tensor, bias: Tensor?,
                                 quantizer: FP8LinearQuantizer) -> Tensor {
        let (inFeatures, outFeatures) = (weight.shape[1], weight.shape[0])
        // With a gated activation (SwiGLU) x is twice the layer's input width: the activation halves it.
        let width = x.shape.last ?? 1
        let rows = x.count / max(width, 1)
        let xs = x.detached().madeContiguous().reshaped([rows, width])
        let h = activation.map { $0.forward(xs) } ?? xs
        precondition(h.shape[1] == inFeatures, "fp8Linear: input \(x.shape)\(activation.map { " through \($0)" } ?? "") "
                     + "does not match weight \(weight.shape) ([out, in])")
        let (needX, needW, needB) = (x.requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false)
        let fp8WeightGradient = needW && quantizer.fp8WeightGradient
        // Backward reads the transposes alone (wgrad xᵀ, dgrad wᵀ), made in the cast's pass; the rowwise codes
        // serve the forward product only.
        let qx = quantizer.quantizeInput(h, transposed: fp8WeightGradient)
        let qw = quantizer.quantizeWeight(weight.detached(), transposed: needX)
        // Fast accumulation in forward only, as Transformer Engine's linear layers.
        var y = Ops.fp8Matmul(qx.rowwise, qw.rowwise, outputType: x.dtype, fastAccumulation: true)
        if let bias { y = Ops.binary(y, bias.detached(), .add) }
        y = y.reshaped(Array(x.shape.dropLast()) + [outFeatures])
        let (inputTransposed, weightTransposed) = (qx.transposed, qw.transposed)
        let (inputType, weightType) = (x.dtype, weight.dtype)
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        // Without FP8 wgrad the weight gradient comes from the high-precision input, kept for it alone.
        let keptInput = quantizer.fp8WeightGradient ? nil : h
        // The activation's input, for its backward; a plain layer keeps only the fp8 input.
        let preActivation = activation == nil ? nil : xs
        return recordAccumulating("fp8Linear", inputs: inputs, output: y) { g, buffers in
            let g2 = g.madeContiguous().reshaped([rows, outFeatures])
            let qg = quantizer.quantizeGradOutput(g2, transposed: fp8WeightGradient)
            var gx: Tensor?
            if needX {
                let dh = Ops.fp8Matmul(qg.rowwise, weightTransposed!, outputType: inputType)
                gx = (preActivation.map { activation!.backward($0, gradOutput: dh) } ?? dh).reshaped(x.shape)
            }
            var gw: InputGradient?, gb: Tensor?
            if let keptInput {
                (gw, gb) = linearParameterGradients(g2, keptInput, needWeight: needW, needBias: needB, buffers: buffers)
            } else {
                gw = needW ? .tensor(Ops.fp8Matmul(qg.transposed!, inputTransposed!, outputType: weightType)) : nil
                gb = needB ? Ops.reduce(g2, dims: [0], .sum) : nil
            }
            return [gx.map(InputGradient.tensor), gw] + (bias == nil ? [] : [gb.map(InputGradient.tensor)])
        }
    }
}
