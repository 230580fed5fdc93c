import MegatronAutograd
import MegatronCUDA
import MegatronTensor

/// How one optimizer (SGD, Adam, AdamW) changes fp32 parameters from fp32 gradients and its state buffers.
///
/// A rule writes its formula twice, once per backend: on host buffers (the CPU reference, with torch's
/// operation order and fp32 roundings) and in tensor ops (each a device kernel); AdamW on a GPU runs the
/// multi-tensor CUDA kernel (`MultiTensorOps.adamW`) instead of its tensor ops. Optimizers do not call
/// either directly: `step(_:step:scheduler:gradientScale:backend:)` runs a rule over every parameter group,
/// on the backend `UpdateBackend.choose` picks from the tensors' device.
public protocol UpdateRule {
    /// fp32 state buffers kept per parameter (momentum: 1; Adam: 2).
    var stateCount: Int { get }
    /// Updates `param` in place on the host; `step` counts from 1.
    func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float)
    /// Updates the fp32 `param` and `state` tensors in place on their device; `step` counts from 1.
    func update(param: Tensor, grad: Tensor, state: [Tensor], step: Int, lr: Float, weightDecay: Float)
}

/// One parameter group's tensors for a multi-tensor update, index-aligned: fp32 master weights, their fp32
/// gradients, the rule's state buffers, and where the model's parameter is not fp32, the parameter (or its
/// slice) that receives the updated master (nil: the master is the parameter itself).
struct UpdateOperands {
    var masters: [Tensor] = []
    var grads: [Tensor] = []
    /// Per tensor, the rule's `stateCount` buffers.
    var states: [[Tensor]] = []
    var copies: [Tensor?] = []

    mutating func append(master: Tensor, grad: Tensor, state: [Tensor], copy: Tensor?) {
        masters.append(master)
        grads.append(grad)
        states.append(state)
        copies.append(copy)
    }
}

/// The scalars of one group's update: update number `step` (from 1), the group's learning rate and weight
/// decay, and the factor the gradients still need (1 / loss scale times the clip coefficient; 1 where
/// `GradientClipping` already applied them in place).
struct UpdateHyperparameters {
    var step: Int
    var lr: Float
    var weightDecay: Float
    var gradientScale: Float = 1
}

/// Where an update runs: on host buffers (CPU tensors), in tensor ops (any device), or as the multi-tensor
/// AdamW kernel (a GPU, AdamW).
enum UpdateBackend {
    case host
    case tensorOps
    case multiTensorKernel

    /// The backend for `rule` over tensors on `device`: the one place the choice is made.
    static func choose(for rule: UpdateRule, on device: Device) -> UpdateBackend {
        if device == .cpu { return .host }
        if let adam = rule as? AdamRule, adam.decoupledWeightDecay { return .multiTensorKernel }
        return .tensorOps
    }
}

extension UpdateRule {
    /// Updates every parameter group as update number `step` (from 1): group `g` takes `scheduler`'s learning
    /// rate and weight decay of group `g`, and every gradient is multiplied by `gradientScale` first.
    func step(_ groups: [UpdateOperands], step: Int, scheduler: OptimizerParamScheduler, gradientScale: Float,
              backend: UpdateBackend) {
        for (g, operands) in groups.enumerated() {
            let hyper = UpdateHyperparameters(step: step, lr: Float(scheduler.learningRate(group: g)),
                                              weightDecay: Float(scheduler.weightDecay(group: g)), gradientScale: gradientScale)
            self.step(operands, hyper: hyper, backend: backend)
        }
    }

    /// Updates every tensor of `operands` with `hyper`, on `backend`, and writes each updated master into
    /// its copy. The multi-tensor kernel writes bf16 copies itself; other copies are cast from the master.
    func step(_ operands: UpdateOperands, hyper: UpdateHyperparameters, backend: UpdateBackend) {
        withoutGrad {
            switch backend {
            case .host: hostStep(operands, hyper)
            case .tensorOps: tensorOpStep(operands, hyper)
            case .multiTensorKernel: kernelStep(operands, hyper)
            }
        }
    }

    private func hostStep(_ operands: UpdateOperands, _ hyper: UpdateHyperparameters) {
        func floats(_ t: Tensor) -> UnsafeMutableBufferPointer<Float> {
            UnsafeMutableBufferPointer(start: t.pointer(as: Float.self), count: t.count)
        }
        for i in operands.masters.indices {
            let grad = floats(operands.grads[i])
            if hyper.gradientScale != 1 { GradientNorm.scale(grad, by: hyper.gradientScale) }
            update(param: floats(operands.masters[i]), grad: UnsafeBufferPointer(grad), state: operands.states[i].map(floats),
                   step: hyper.step, lr: hyper.lr, weightDecay: hyper.weightDecay)
            if let copy = operands.copies[i] { Ops.copy(operands.masters[i], into: copy) }
        }
    }

    private func tensorOpStep(_ operands: UpdateOperands, _ hyper: UpdateHyperparameters) {
        for i in operands.masters.indices {
            var grad = operands.grads[i]
            if hyper.gradientScale != 1 { grad = Ops.binary(grad, Tensor(scalar: hyper.gradientScale), .mul) }
            update(param: operands.masters[i], grad: grad, state: operands.states[i], step: hyper.step, lr: hyper.lr,
                   weightDecay: hyper.weightDecay)
            if let copy = operands.copies[i] { Ops.copy(operands.masters[i], into: copy) }
        }
    }

    /// `MultiTensorOps.adamW`: one launch for the group. The kernel writes bf16 copies; an fp16 parameter is
    /// cast from its updated master after it.
    private func kernelStep(_ operands: UpdateOperands, _ hyper: UpdateHyperparameters) {
        guard let adam = self as? AdamRule, adam.decoupledWeightDecay, !operands.masters.isEmpty else {
            preconditionFailure("the multi-tensor kernel runs AdamW only; UpdateBackend.choose picks it for AdamW only")
        }
        let kernelCopies = operands.copies.map { $0?.dtype == .bfloat16 ? $0 : nil }
        MultiTensorOps.adamW(params: operands.masters, grads: operands.grads, expAvg: operands.states.map { $0[0] },
                             expAvgSq: operands.states.map { $0[1] }, copies: kernelCopies,
                             step: AdamWStep(learningRate: hyper.lr, beta1: Float(adam.beta1), beta2: Float(adam.beta2),
                                             epsilon: Float(adam.eps), weightDecay: hyper.weightDecay, step: hyper.step,
                                             gradientScale: hyper.gradientScale))
        for case let (master, copy?) in zip(operands.masters, operands.copies) where copy.dtype != .bfloat16 {
            Ops.copy(master, into: copy)
        }
    }
}
