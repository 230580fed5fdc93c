import MegatronCUDA

/// `Ops.gatedDeltaRule` and its backward on CUDA tensors: one CUDAKernels launch each over contiguous fp32
/// operands (the backward with its scratch from the caching allocator).
enum CUDAGatedDeltaRule {
    static func forward(_ operands: [Tensor], shape s: GatedDeltaRuleShape, scale: Float) -> Tensor {
        let out = Tensor.empty([s.batch, s.time, s.heads, s.valueDim], dtype: .float32, device: operands[0].device)
        let problem = self.problem(s, scale: scale)
        CUDAFusedOps.run("gatedDeltaRule", on: out.device) { nn, stream in
            let p = operands.map(\.deviceAddress)
            try nn.gatedDeltaRuleForward(out.deviceAddress, q: p[0], k: p[1], v: p[2], g: p[3], beta: p[4],
                                         problem: problem, stream: stream)
        }
        return out
    }

    /// `operands` are q, k, v, g, beta and the output's gradient.
    static func backward(_ operands: [Tensor], shape s: GatedDeltaRuleShape, scale: Float) -> GatedDeltaRuleGradients {
        let device = operands[0].device
        let problem = self.problem(s, scale: scale)
        let grads = operands.prefix(5).map { Tensor.zeros($0.shape, dtype: .float32, device: device) }
        let checkpoints = Tensor.empty([problem.checkpointFloats], dtype: .float32, device: device)
        let chunkStates = Tensor.empty([problem.chunkStateFloats], dtype: .float32, device: device)
        CUDAFusedOps.run("gatedDeltaRuleBackward", on: device) { nn, stream in
            let p = operands.map(\.deviceAddress), d = grads.map(\.deviceAddress)
            try nn.gatedDeltaRuleBackward(dq: d[0], dk: d[1], dv: d[2], dg: d[3], dbeta: d[4],
                                          checkpoints: checkpoints.deviceAddress, chunkStates: chunkStates.deviceAddress,
                                          q: p[0], k: p[1], v: p[2], g: p[3], beta: p[4], dout: p[5],
                                          problem: problem, stream: stream)
        }
        return GatedDeltaRuleGradients(q: grads[0], k: grads[1], v: grads[2], g: grads[3], beta: grads[4])
    }

    private static func problem(_ s: GatedDeltaRuleShape, scale: Float) -> GatedDeltaRuleProblem {
        GatedDeltaRuleProblem(batch: s.batch, time: s.time, heads: s.heads, keyDim: s.keyDim, valueDim: s.valueDim, scale: scale)
    }
}
