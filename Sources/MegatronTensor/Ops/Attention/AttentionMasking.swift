/// What an attention softmax sees besides the causal mask (gpt-oss's attention): a sliding window of keys,
/// and sink logits.
///
/// - `window`: query `i` (at key position `p = i + t - s`) sees keys `p - window ... p` only (Megatron's
///   `--window-size window,0`); nil sees every earlier key.
/// - `sinks`: one logit per query head, fp32 `[heads]`, that joins every row's softmax as a key without a
///   value (Megatron's `softmax_offset`: zeros for `--softmax-type off-by-one`, a learned parameter for
///   `learnable`): `p_j = exp(x_j) / (exp(sink) + Σ exp(x_k))`. The scores' scale does not apply to it.
///
/// ```swift
/// let masking = AttentionMasking(window: 127, sinks: Tensor.zeros([heads], dtype: .float32))
/// let (o, lse) = Ops.attention(q: q, k: k, v: v, causal: true, scale: 1 / 8, masking: masking)
/// ```
public struct AttentionMasking {
    public var window: Int?
    public var sinks: Tensor?

    public init(window: Int? = nil, sinks: Tensor? = nil) {
        (self.window, self.sinks) = (window, sinks)
    }

    public static let none = AttentionMasking()

    public var isNone: Bool { window == nil && sinks == nil }

    /// The same masking with the sinks on `device`.
    func to(_ device: Device) -> AttentionMasking { AttentionMasking(window: window, sinks: sinks?.to(device)) }

    /// Traps on a masking no input can reach (the model checks its flags first).
    func check(_ layout: AttentionLayout, causal: Bool) {
        if let window { precondition(causal && window >= 0, "attention: a sliding window (\(window)) needs a causal mask and a size >= 0") }
        if let sinks {
            precondition(sinks.shape == [layout.heads] && sinks.dtype == .float32,
                         "attention: sinks must be fp32 [\(layout.heads)], got \(sinks.dtype) \(sinks.shape)")
        }
    }
}

extension Ops {
    /// The gradient of the attention loss with respect to the sink logits (`AttentionMasking.sinks`), fp32
    /// `[heads]`, from the forward's output and log-sum-exp (which counts the sinks) and the output's gradient.
    /// A sink takes probability `P_sink = exp(sink - lse)` and gives no value, so
    /// `dsink_h = -Σ_{b, i} P_sink(b, h, i) · rowsum(dO ∘ O)(b, h, i)`; no `[s, t]` term is needed.
    public static func attentionSinkGradient(gradOutput: Tensor, output: Tensor, logSumExp: Tensor, sinks: Tensor) -> Tensor {
        let heads = sinks.size(0)
        let rows = logSumExp.shape
        precondition(rows.count == 3 && rows[1] == heads, "attentionSinkGradient: logSumExp \(rows) is not [b, \(heads), s]")
        let product = binary(gradOutput.cast(to: .float32), output.cast(to: .float32), .mul)
        let delta = reduce(product, dims: [product.rank - 1], .sum).reshaped(rows)
        let sinkProbability = unary(binary(sinks.reshaped([1, heads, 1]), logSumExp, .sub), .exp)
        return unary(reduce(binary(sinkProbability, delta, .mul), dims: [0, 2], .sum), .neg)
    }
}
