import Foundation

/// The sizes of one gated delta rule: q, k `[batch, time, heads, keyDim]`, v `[batch, time, heads, valueDim]`,
/// g and beta `[batch, time, heads]`, all fp32 on one device.
public struct GatedDeltaRuleShape: Sendable, Equatable {
    public let batch: Int, time: Int, heads: Int, keyDim: Int, valueDim: Int

    init(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor) {
        precondition(q.rank == 4 && k.shape == q.shape && v.rank == 4 && Array(v.shape.prefix(3)) == Array(q.shape.prefix(3)),
                     "gated delta rule wants q, k [b, t, h, dk] and v [b, t, h, dv], got \(q.shape), \(k.shape), \(v.shape)")
        precondition(g.shape == Array(q.shape.prefix(3)) && beta.shape == g.shape,
                     "gated delta rule wants g and beta [b, t, h], got \(g.shape) and \(beta.shape)")
        precondition([q, k, v, g, beta].allSatisfy { $0.dtype == .float32 && $0.device == q.device },
                     "gated delta rule wants fp32 operands on one device")
        (batch, time, heads, keyDim, valueDim) = (q.size(0), q.size(1), q.size(2), q.size(3), v.size(3))
    }
}

/// The gradients of a gated delta rule's operands.
public struct GatedDeltaRuleGradients {
    public let q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor
}

extension Ops {
    /// The gated delta rule of Gated DeltaNet (fla's `fused_recurrent_gated_delta_rule`, which Megatron's
    /// chunked kernels compute in blocks): per batch row and head a state `S [keyDim, valueDim]`, zero at
    /// the start, and for each time step t
    ///
    ///     S = exp(g_t) S;  u_t = beta_t (v_t - S^T k_t);  S += k_t u_t^T;  o_t = S^T (scale q_t)
    ///
    /// Returns o `[batch, time, heads, valueDim]` (fp32). q and k are used as given (Megatron L2-normalizes
    /// them before). On the GPU one kernel thread carries one state column over time (MegatronCUDA/Kernels/GatedDeltaRule/gated_delta_rule.cu).
    public static func gatedDeltaRule(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Float) -> Tensor {
        let shape = GatedDeltaRuleShape(q: q, k: k, v: v, g: g, beta: beta)
        let operands = [q, k, v, g, beta].map { $0.madeContiguous() }
        if cudaDevice(operands, op: "gatedDeltaRule") != nil {
            return CUDAGatedDeltaRule.forward(operands, shape: shape, scale: scale)
        }
        let (q, k, v, g, beta) = (operands[0].floats(), operands[1].floats(), operands[2].floats(),
                                  operands[3].floats(), operands[4].floats())
        let (dk, dv) = (shape.keyDim, shape.valueDim)
        return Tensor.computed(shape: [shape.batch, shape.time, shape.heads, dv]) { out in
            parallelChunks(shape.batch * shape.heads, grain: 1) { tasks in
                for task in tasks {
                    var state = [Float](repeating: 0, count: dk * dv)
                    for step in GatedDeltaRuleSteps(shape, task: task) {
                        let t = step.position
                        state = GatedDeltaRuleReverse.advance(state, a: Foundation.exp(g[t]), k: k[(t * dk)...],
                                                              v: v[(t * dv)...], beta: beta[t], dk: dk, dv: dv).state
                        for j in 0..<dv {
                            var o: Float = 0
                            for i in 0..<dk { o += state[i * dv + j] * q[t * dk + i] }
                            out[t * dv + j] = o * scale
                        }
                    }
                }
            }
        }
    }

    /// The gradients of `gatedDeltaRule` given the gradient `gradOutput` of its output: one reverse pass over
    /// time per batch row and head, replaying the states of the forward.
    public static func gatedDeltaRuleBackward(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: Float,
                                              gradOutput: Tensor) -> GatedDeltaRuleGradients {
        let shape = GatedDeltaRuleShape(q: q, k: k, v: v, g: g, beta: beta)
        let operands = [q, k, v, g, beta, gradOutput.cast(to: .float32)].map { $0.madeContiguous() }
        if cudaDevice(operands, op: "gatedDeltaRuleBackward") != nil {
            return CUDAGatedDeltaRule.backward(operands, shape: shape, scale: scale)
        }
        let inputs = operands.map { $0.floats() }
        let (dk, dv) = (shape.keyDim, shape.valueDim)
        let grads = [q.count, k.count, v.count, g.count, beta.count].map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0) }
        defer { grads.forEach { $0.deallocate() } }
        for buffer in grads { buffer.initialize(repeating: 0) }
        parallelChunks(shape.batch * shape.heads, grain: 1) { tasks in
            for task in tasks {
                GatedDeltaRuleReverse(inputs: inputs, grads: grads, keyDim: dk, valueDim: dv, scale: scale)
                    .run(Array(GatedDeltaRuleSteps(shape, task: task)))
            }
        }
        let tensors = zip(grads, [q, k, v, g, beta]).map { Tensor(shape: $1.shape, values: Array($0)) }
        return GatedDeltaRuleGradients(q: tensors[0], k: tensors[1], v: tensors[2], g: tensors[3], beta: tensors[4])
    }
}

/// The time steps of one (batch row, head): `position` indexes g and beta, and times `keyDim` / `valueDim`
/// the rows of q, k and v, o.
struct GatedDeltaRuleSteps: Sequence, IteratorProtocol {
    struct Step { let position: Int }
    let first: Int, heads: Int, end: Int
    var current: Int

    init(_ shape: GatedDeltaRuleShape, task: Int) {
        let (b, h) = (task / shape.heads, task % shape.heads)
        first = b * shape.time * shape.heads + h
        heads = shape.heads
        end = first + shape.time * shape.heads
        current = first
    }

    mutating func next() -> Step? {
        guard current < end else { return nil }
        defer { current += heads }
        return Step(position: current)
    }
}

/// The reverse pass of one (batch row, head) on the CPU. With `P_t = exp(g_t) S_{t-1}`, `kv_t = P_t^T k_t`,
/// `u_t = beta_t (v_t - kv_t)`, `S_t = P_t + k_t u_t^T` and `o_t = S_t^T q~_t` (`q~ = scale q`), and `dS` the
/// gradient of `S_t` carried back from later steps:
///
///     dS += q~_t do_t^T;  dq~_t = S_t do_t;  du = dS^T k_t;  dk_t = dS u_t + P_t dkv;  dv_t = beta_t du
///     dbeta_t = du . (v_t - kv_t);  dkv = -beta_t du;  dP = dS + k_t dkv^T;  dg_t = sum(dP * P_t);  dS = exp(g_t) dP
struct GatedDeltaRuleReverse {
    let inputs: [[Float]]
    let grads: [UnsafeMutableBufferPointer<Float>]
    let keyDim: Int, valueDim: Int, scale: Float

    func run(_ steps: [GatedDeltaRuleSteps.Step]) {
        let (q, k, v, g, beta, gradOut) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5])
        let (dk, dv) = (keyDim, valueDim)
        // states[n] is S after n steps (S_0 = 0).
        var states = [[Float]](repeating: [Float](repeating: 0, count: dk * dv), count: steps.count + 1)
        for (n, step) in steps.enumerated() {
            let t = step.position
            states[n + 1] = Self.advance(states[n], a: Foundation.exp(g[t]), k: k[(t * dk)...], v: v[(t * dv)...],
                                         beta: beta[t], dk: dk, dv: dv).state
        }
        var dS = [Float](repeating: 0, count: dk * dv)
        var dP = [Float](repeating: 0, count: dk * dv)
        for (n, step) in steps.enumerated().reversed() {
            let t = step.position
            let a = Foundation.exp(g[t])
            let (state, previous) = (states[n + 1], states[n])
            let advanced = Self.advance(previous, a: a, k: k[(t * dk)...], v: v[(t * dv)...], beta: beta[t], dk: dk, dv: dv)
            var dBeta: Float = 0, dG: Float = 0
            for i in 0..<dk {
                var dq: Float = 0
                for j in 0..<dv {
                    dS[i * dv + j] += scale * q[t * dk + i] * gradOut[t * dv + j]
                    dq += state[i * dv + j] * gradOut[t * dv + j]
                }
                grads[0][t * dk + i] = scale * dq
            }
            for j in 0..<dv {
                var du: Float = 0
                for i in 0..<dk { du += dS[i * dv + j] * k[t * dk + i] }
                grads[2][t * dv + j] = beta[t] * du
                dBeta += du * (v[t * dv + j] - advanced.kv[j])
                let dkv = -beta[t] * du
                for i in 0..<dk {
                    let p = a * previous[i * dv + j]
                    grads[1][t * dk + i] += dS[i * dv + j] * advanced.u[j] + p * dkv
                    dP[i * dv + j] = dS[i * dv + j] + k[t * dk + i] * dkv
                    dG += dP[i * dv + j] * p
                }
            }
            grads[3][t] = dG
            grads[4][t] = dBeta
            for i in dS.indices { dS[i] = a * dP[i] }
        }
    }

    /// One forward step from `state` (S_{t-1}): the next state, and the step's `kv` and `u`.
    static func advance(_ state: [Float], a: Float, k: ArraySlice<Float>, v: ArraySlice<Float>, beta: Float,
                        dk: Int, dv: Int) -> (state: [Float], kv: [Float], u: [Float]) {
        var next = state.map { $0 * a }
        var kv = [Float](repeating: 0, count: dv), u = [Float](repeating: 0, count: dv)
        let (k0, v0) = (k.startIndex, v.startIndex)
        for j in 0..<dv {
            for i in 0..<dk { kv[j] += next[i * dv + j] * k[k0 + i] }
            u[j] = beta * (v[v0 + j] - kv[j])
            for i in 0..<dk { next[i * dv + j] += k[k0 + i] * u[j] }
        }
        return (next, kv, u)
    }
}
