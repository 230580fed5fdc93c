import MegatronTensor

extension Functional {
    /// `linear(x, weight, bias)` with its three GEMMs in FP8, as Transformer Engine's linear layers under
    /// `fp8_autocast`: forward x · Wᵀ from the quantized input and weight, backward dgrad dY · W and wgrad
    /// dYᵀ · X from the quantized output gradient (in the layer's precision under `--no-fp8-wgrad`), each accumulated in fp32 (`Ops.fp8Matmul`). Backward keeps
    /// the fp8 input and weight, not the high-precision ones. The bias is added and its gradient summed in
    /// the layer's precision. With `activation`, the layer's input is `activation(x)`, computed here and
    /// differentiated here (the MLP's `linear_fc2`).
    ///
    /// ```swift
    /// let y = Functional.fp8Linear(x, weight: w, bias: b, quantizer: scaling)   // x [..., in], w [out, in]
    /// ```
    public static func fp8Linear(_ x: Tensor, activation: RecomputedActivation? = nil, weight: Tensor, bias: Tensor?,
                                 quantizer: FP8LinearQuantizer) -> Tensor {
        let (inFeatures, outFeatures) = (weight.shape[1], weight.shape[0])
        precondition(x.shape.last == inFeatures, "fp8Linear: input \(x.shape) does not match weight \(weight.shape) ([out, in])")
        let rows = x.count / max(inFeatures, 1)
        let xs = x.detached().madeContiguous().reshaped([rows, inFeatures])
        let h = activation.map { $0.forward(xs) } ?? xs
        let qx = quantizer.quantizeInput(h)
        let qw = quantizer.quantizeWeight(weight.detached())
        var y = Ops.fp8Matmul(qx, qw, outputType: x.dtype)
        if let bias { y = Ops.binary(y, bias.detached(), .add) }
        y = y.reshaped(Array(x.shape.dropLast()) + [outFeatures])
        let (needX, needW, needB) = (x.requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false)
        let (inputType, weightType) = (x.dtype, weight.dtype)
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        // Without FP8 wgrad the weight gradient comes from the high-precision input, kept for it alone.
        let keptInput = quantizer.fp8WeightGradient ? nil : h
        // The activation's input, for its backward; a plain layer keeps only the fp8 input.
        let preActivation = activation == nil ? nil : xs
        return recordAccumulating("fp8Linear", inputs: inputs, output: y) { g, buffers in
            let g2 = g.madeContiguous().reshaped([rows, outFeatures])
            let qg = quantizer.quantizeGradOutput(g2)
            var gx: Tensor?
            if needX {
                let dh = Ops.fp8Matmul(qg, qw.transposedCopy(), outputType: inputType)
                gx = (preActivation.map { activation!.backward($0, gradOutput: dh) } ?? dh).reshaped(x.shape)
            }
            var gw: InputGradient?, gb: Tensor?
            if let keptInput {
                (gw, gb) = linearParameterGradients(g2, keptInput, needWeight: needW, needBias: needB, buffers: buffers)
            } else {
                gw = needW ? .tensor(Ops.fp8Matmul(qg.transposedCopy(), qx.transposedCopy(), outputType: weightType)) : nil
                gb = needB ? Ops.reduce(g2, dims: [0], .sum) : nil
            }
            return [gx.map(InputGradient.tensor), gw] + (bias == nil ? [] : [gb.map(InputGradient.tensor)])
        }
    }
}
