import Foundation
import MegatronTensor

// The rules' tensor-op forms: the backend for devices without a multi-tensor kernel for the rule (SGD,
// Adam with L2 weight decay), each op a device kernel.

extension AdamRule {
    /// torch's Adam / AdamW formula (`p *= 1 - lr wd`; moments; `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`),
    /// with the moments blended as `b m + (1 - b) g` rather than torch's `lerp` (equal up to rounding).
    public func update(param: Tensor, grad: Tensor, state: [Tensor], step: Int, lr: Float, weightDecay: Float) {
        func scalar(_ x: Double) -> Tensor { Tensor(scalar: Float(x)) }
        let (m, v) = (state[0], state[1])
        var p = param
        var g = grad
        if decoupledWeightDecay {
            if weightDecay != 0 { p = Ops.binary(p, scalar(1 - Double(lr) * Double(weightDecay)), .mul) }
        } else if weightDecay != 0 {
            g = Ops.binary(g, Ops.binary(p, scalar(Double(weightDecay)), .mul), .add)
        }
        let newM = Ops.binary(Ops.binary(m, scalar(beta1), .mul), Ops.binary(g, scalar(1 - beta1), .mul), .add)
        let newV = Ops.binary(Ops.binary(v, scalar(beta2), .mul),
                              Ops.binary(Ops.binary(g, g, .mul), scalar(1 - beta2), .mul), .add)
        let biasCorrection1 = 1 - Foundation.pow(beta1, Double(step))
        let biasCorrection2Sqrt = (1 - Foundation.pow(beta2, Double(step))).squareRoot()
        let denominator = Ops.binary(Ops.binary(Ops.unary(newV, .sqrt), scalar(biasCorrection2Sqrt), .div), scalar(eps), .add)
        let stepTensor = Ops.binary(Ops.binary(newM, denominator, .div), scalar(Double(lr) / biasCorrection1), .mul)
        Ops.copy(Ops.binary(p, stepTensor, .sub), into: param)
        Ops.copy(newM, into: m)
        Ops.copy(newV, into: v)
    }
}

extension SGDRule {
    /// torch's SGD (see the type's formula) in tensor ops: L2 weight decay into the gradient, the momentum
    /// buffer set to the gradient on step 1 and blended after, Nesterov's look-ahead, then `p -= lr d`.
    public func update(param: Tensor, grad: Tensor, state: [Tensor], step: Int, lr: Float, weightDecay: Float) {
        func scalar(_ x: Double) -> Tensor { Tensor(scalar: Float(x)) }
        var g = grad
        if weightDecay != 0 { g = Ops.binary(g, Ops.binary(param, scalar(Double(weightDecay)), .mul), .add) }
        var direction = g
        if let buffer = state.first {
            let blended = step == 1 ? g : Ops.binary(Ops.binary(buffer, scalar(momentum), .mul),
                                                     Ops.binary(g, scalar(1 - dampening), .mul), .add)
            Ops.copy(blended, into: buffer)
            direction = nesterov ? Ops.binary(g, Ops.binary(blended, scalar(momentum), .mul), .add) : blended
        }
        Ops.copy(Ops.binary(param, Ops.binary(direction, scalar(Double(lr)), .mul), .sub), into: param)
    }
}
