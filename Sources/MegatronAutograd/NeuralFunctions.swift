import MegatronTensor

/// Differentiable building blocks of neural networks, each a fused primitive with a hand-written backward.
public enum Functional {
    /// Softmax over the last dimension.
    public static func softmax(_ x: Tensor) -> Tensor {
        let y = Ops.softmax(x.detached())
        return record("softmax", inputs: [x], output: y) { g in [Ops.softmaxBackward(y, gradOutput: g)] }
    }

    /// Log-softmax over the last dimension.
    public static func logSoftmax(_ x: Tensor) -> Tensor {
        let y = Ops.softmax(x.detached(), log: true)
        return record("logSoftmax", inputs: [x], output: y) { g in [Ops.softmaxBackward(y, gradOutput: g, log: true)] }
    }

    /// Layer norm over the last dimension with optional affine weight and bias.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float = 1e-5) -> Tensor {
        let (xs, ws) = (x.detached(), weight?.detached())
        let r = Ops.layerNorm(xs, weight: ws, bias: bias?.detached(), epsilon: epsilon)
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return record("layerNorm", inputs: inputs, output: r.output) { g in
            let b = Ops.layerNormBackward(g, x: xs, mean: r.mean, rstd: r.rstd, weight: ws)
            return [b.gradInput] + (weight == nil ? [] : [b.gradWeight]) + (bias == nil ? [] : [b.gradBias])
        }
    }

    /// RMS norm over the last dimension with an optional weight.
    public static func rmsNorm(_ x: Tensor, weight: Tensor?, epsilon: Float = 1e-5) -> Tensor {
        let (xs, ws) = (x.detached(), weight?.detached())
        let r = Ops.rmsNorm(xs, weight: ws, epsilon: epsilon)
        let inputs = [x] + [weight].compactMap { $0 }
        return record("rmsNorm", inputs: inputs, output: r.output) { g in
            let b = Ops.rmsNormBackward(g, x: xs, rstd: r.rstd, weight: ws)
            return [b.gradInput] + (weight == nil ? [] : [b.gradWeight])
        }
    }

    /// GeLU with the tanh approximation (`approximate: true`, GPT-2's) or the exact erf form.
    public static func gelu(_ x: Tensor, approximate: Bool = true) -> Tensor {
        x.apply(approximate ? .geluTanh : .geluErf)
    }

    public static func silu(_ x: Tensor) -> Tensor { x.apply(.silu) }

    /// SwiGLU as Megatron's gated MLP: the last dimension holds [gate, up]; returns `silu(gate) * up`.
    public static func swiglu(_ x: Tensor) -> Tensor {
        let xs = x.detached()
        return record("swiglu", inputs: [x], output: Ops.swiglu(xs)) { g in [Ops.swigluBackward(xs, gradOutput: g)] }
    }

    /// Rows of `weight [vocab, hidden]` picked by `ids`; the weight's gradient sums in fp32 (see `Ops.embeddingBackward`).
    public static func embedding(_ ids: Tensor, weight: Tensor) -> Tensor {
        let w = weight.detached()
        return record("embedding", inputs: [weight], output: Ops.embedding(w, ids: ids)) { g in
            [Ops.embeddingBackward(g.reshaped([-1, w.shape[1]]), ids: ids.reshaped([-1]), vocabulary: w.shape[0])]
        }
    }

    /// Cross-entropy per token of `logits [..., V]` against integer `labels [...]`, fused with the softmax.
    ///
    /// Positions whose label is `ignoreIndex` get loss 0 and no gradient. Reduce the result yourself
    /// (Megatron averages over the loss mask). `consumingLogits` lets backward write the logits' gradient
    /// over the logits themselves on the GPU, saving a vocabulary-sized tensor at the memory peak; pass it
    /// only for logits that nothing else reads (a model's loss head), and not with `retainGraph`.
    public static func crossEntropy(_ logits: Tensor, labels: Tensor, ignoreIndex: Int = -100,
                                    labelSmoothing: Float = 0, consumingLogits: Bool = false) -> Tensor {
        let v = logits.shape.last!
        let flat = logits.detached().reshaped([-1, v]), flatLabels = labels.reshaped([-1])
        let r = Ops.crossEntropy(flat, labels: flatLabels, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
        let logitsShape = logits.shape
        return record("crossEntropy", inputs: [logits], output: r.loss.reshaped(labels.shape)) { g in
            [Ops.crossEntropyBackward(flat, labels: flatLabels, logSumExp: r.logSumExp, gradLoss: g.reshaped([-1]),
                                      ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing,
                                      overwritingLogits: consumingLogits).reshaped(logitsShape)]
        }
    }

    /// Inverted dropout with probability `p`, its mask drawn from `generator` (identity when `p == 0`).
    public static func dropout(_ x: Tensor, p: Float, generator: PhiloxGenerator) -> Tensor {
        if p == 0 { return x }
        let (seed, offset) = (generator.seed, generator.nextOffset())
        return record("dropout", inputs: [x], output: Ops.dropout(x.detached(), p: p, seed: seed, offset: offset)) { g in
            [Ops.dropout(g, p: p, seed: seed, offset: offset)]
        }
    }

    /// Values of `x` at `index` along `dim` (`torch.gather`).
    public static func gather(_ x: Tensor, dim: Int, index: Tensor) -> Tensor {
        let shape = x.shape
        return record("gather", inputs: [x], output: Ops.gather(x.detached(), dim: dim, index: index)) { g in
            [Ops.scatterAdd(Tensor.zeros(shape, dtype: g.dtype, device: g.device), dim: dim, index: index, source: g)]
        }
    }

    /// `x` plus `source` scattered along `dim` at `index` (`scatter_add`), differentiable in both.
    public static func scatterAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let out = Ops.scatterAdd(x.detached(), dim: dim, index: index, source: source.detached())
        return record("scatterAdd", inputs: [x, source], output: out) { g in [g, Ops.gather(g, dim: dim, index: index)] }
    }

    /// `x` plus slices of `source` added at `index` along `dim` (`index_add`), differentiable in both.
    public static func indexAdd(_ x: Tensor, dim: Int, index: Tensor, source: Tensor) -> Tensor {
        let out = Ops.indexAdd(x.detached(), dim: dim, index: index, source: source.detached())
        let d = Shape.normalize(dim, rank: x.rank)
        return record("indexAdd", inputs: [x, source], output: out) { g in
            // The gradient of each source slice is the output gradient at the slice it was added to.
            let positions = index.ints()
            let pieces = positions.map { g.narrowed(d, start: $0, length: 1) }
            return [g, Ops.concat(pieces, dim: d)]
        }
    }

    /// The `k` largest values along the last dimension and their indices; values are differentiable.
    public static func topk(_ x: Tensor, k: Int, largest: Bool = true) -> (values: Tensor, indices: Tensor) {
        let r = Ops.topk(x.detached(), k: k, largest: largest)
        let shape = x.shape
        let values = record("topk", inputs: [x], output: r.values) { g in
            [Ops.scatterAdd(Tensor.zeros(shape, dtype: g.dtype, device: g.device), dim: -1, index: r.indices, source: g)]
        }
        return (values, r.indices)
    }
}

extension Functional {
    /// A linear layer, `x W^T + bias` with `weight [out, in]` (Megatron's layout): one GEMM over all
    /// tokens forward (bias in its epilogue on the GPU); backward one GEMM each for the input and the
    /// weight gradient, and a column sum for the bias (on the GPU fused into the weight-gradient GEMM).
    ///
    /// When the weight already has an fp32 `.grad` (a main grad set by the optimizer's `zeroGrad` or by
    /// DDP) and this is its only use in the pass, the weight-gradient GEMM adds straight into that buffer
    /// (gradient-accumulation fusion, see `Ops.accumulateLinearWeightGradient`).
    ///
    /// ```swift
    /// let y = Functional.linear(x, weight: w, bias: b)   // x [batch, seq, in] -> [batch, seq, out]
    /// ```
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        recordLinear(x, weight: weight, bias: bias, output: Ops.linear(x.detached(), weight: weight.detached(), bias: bias?.detached()))
    }

    /// Records `y`, which the caller computed as `linear(x, weight, bias)` (possibly fused with what
    /// follows, as `geluMLP` does), with `linear`'s backward.
    static func recordLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, output y: Tensor) -> Tensor {
        let (xs, ws) = (x.detached(), weight.detached())
        let (needX, needW, needB) = (x.requiresGrad, weight.requiresGrad, bias?.requiresGrad ?? false)
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        return recordAccumulating("linear", inputs: inputs, output: y) { g, buffers in
            let gx = needX ? Ops.matmul(g, ws) : nil
            let parameters = linearParameterGradients(g, xs, needWeight: needW, needBias: needB, buffers: buffers)
            return [gx.map(InputGradient.tensor), parameters.weight] + (bias == nil ? [] : [parameters.bias.map(InputGradient.tensor)])
        }
    }

    /// The weight and bias gradients of `linear` (inputs 1 and 2), the weight's accumulated in place into
    /// its fp32 main grad when the pass offers it.
    static func linearParameterGradients(_ g: Tensor, _ x: Tensor, needWeight: Bool, needBias: Bool,
                                                 buffers: LeafGradientBuffers) -> (weight: InputGradient?, bias: Tensor?) {
        guard needWeight || needBias else { return (nil, nil) }
        guard needWeight, let mainGrad = buffers.accumulationTarget(forInput: 1) else {
            let r = Ops.linearParameterGradients(gradOutput: g, input: x, withBias: needBias)
            return (needWeight ? .tensor(r.weight) : nil, r.bias)
        }
        let biasGrad = Ops.accumulateLinearWeightGradient(gradOutput: g, input: x, into: mainGrad, withBias: needBias)
        // The fp32 bias gradient goes as is into an fp32 main grad, else in the gradient's dtype as without fusion.
        let bias = buffers.accumulationTarget(forInput: 2) == nil ? biasGrad?.cast(to: g.dtype) : biasGrad
        return (.accumulatedInPlace, bias)
    }
}
