import Foundation
import MegatronCore

/// Iteration counts, batch size and learning rate of a run. PROVISIONAL: replaced by OptimizerParamScheduler.
struct TrainingSchedule {
    let trainIters: Int
    let globalBatchSize: Int
    let lr: Float
    let minLR: Float
    let warmupSamples: Int
    let decaySamples: Int

    init(_ a: PretrainArguments) throws {
        globalBatchSize = a.globalBatchSize ?? a.microBatchSize
        trainIters = a.trainIters ?? (a.trainSamples! + globalBatchSize - 1) / globalBatchSize
        lr = a.lr!
        minLR = a.minLR
        warmupSamples = a.lrWarmupIters * globalBatchSize
        decaySamples = (a.lrDecayIters ?? trainIters) * globalBatchSize
    }

    func learningRate(consumedSamples s: Int) -> Float {
        if warmupSamples > 0 && s <= warmupSamples { return lr * Float(s) / Float(warmupSamples) }
        let ratio = Float(s - warmupSamples) / Float(max(1, decaySamples - warmupSamples))
        return minLR + (lr - minLR) * 0.5 * (1 + cos(Float.pi * min(1, ratio)))
    }
}

/// PROVISIONAL AdamW.
struct ProvisionalAdamW: UpdateRule {
    var beta1: Float, beta2: Float, eps: Float
    var stateCount: Int { 2 }
    func update(param: UnsafeMutableBufferPointer<Float>, grad: UnsafeBufferPointer<Float>,
                state: [UnsafeMutableBufferPointer<Float>], step: Int, lr: Float, weightDecay: Float) {
        let (m, v) = (state[0], state[1])
        let bc1 = 1 - pow(beta1, Float(step)), bc2 = 1 - pow(beta2, Float(step))
        for i in 0..<param.count {
            param[i] *= 1 - lr * weightDecay
            m[i] = beta1 * m[i] + (1 - beta1) * grad[i]
            v[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i]
            param[i] -= lr / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + eps)
        }
    }
}

func makeOptimizer(_ a: PretrainArguments, model: GPTModel) -> MixedPrecisionOptimizer {
    let params = model.namedParameters()
    let noDecay = params.filter { $0.1.rank == 1 || $0.0.hasSuffix(".bias") }
    let decay = params.filter { !($0.1.rank == 1 || $0.0.hasSuffix(".bias")) }
    return MixedPrecisionOptimizer(
        groups: [ParamGroup(parameters: decay.map { (name: $0.0, tensor: $0.1) }, weightDecay: a.weightDecay),
                 ParamGroup(parameters: noDecay.map { (name: $0.0, tensor: $0.1) }, weightDecay: 0)],
        rule: ProvisionalAdamW(beta1: a.adamBeta1, beta2: a.adamBeta2, eps: a.adamEps))
}
