import MegatronTensor

extension Functional {
    /// The gated delta rule of Gated DeltaNet as one primitive (`Ops.gatedDeltaRule`): q, k
    /// `[batch, time, heads, keyDim]`, v `[batch, time, heads, valueDim]`, the log-decay g and the write
    /// strength beta `[batch, time, heads]`, all fp32; returns o `[batch, time, heads, valueDim]` in fp32. The
    /// backward replays the recurrence in reverse (`Ops.gatedDeltaRuleBackward`).
    ///
    ///     let o = Functional.gatedDeltaRule(q: q, k: k, v: v, g: g, beta: beta, scale: 1 / Float(dk).squareRoot())
    public static func gatedDeltaRule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Float) -> Tensor {
        let operands = [q, k, v, g, beta].map { $0.detached() }
        let output = Ops.gatedDeltaRule(q: operands[0], k: operands[1], v: operands[2], g: operands[3], beta: operands[4],
                                        scale: scale)
        return record("gatedDeltaRule", inputs: [q, k, v, g, beta], output: output) { gradient in
            let d = Ops.gatedDeltaRuleBackward(q: operands[0], k: operands[1], v: operands[2], g: operands[3],
                                               beta: operands[4], scale: scale, gradOutput: gradient)
            return [d.q, d.k, d.v, d.g, d.beta]
        }
    }
}
