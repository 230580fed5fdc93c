import MegatronParallel
import MegatronTensor

/// What a training step does for a model's MoE layers around its passes, as Megatron's schedules and
/// `finalize_model_grads` do: the aux losses' backward scale, the expert-bias update once per global batch,
/// and the logged aux-loss values.
public struct MoETraining {
    public let layers: [MoELayer]

    public init(model: Module) { layers = model.moeLayers }

    /// Megatron's `MoEAuxLossAutoScaler.set_loss_scale`: the main loss's scale times cp over the micro-batch
    /// count, or the loss scale alone with per-token loss (the routers then multiply by their token counts).
    public func setAuxLossScale(lossScale: Float, contextParallel: Int, microBatches: Int, perTokenLoss: Bool) {
        for layer in layers {
            layer.router.auxLossBackwardScale = perTokenLoss ? lossScale : lossScale * Float(contextParallel) / Float(microBatches)
            layer.router.auxLossPerToken = perTokenLoss
        }
    }

    /// Updates each router's expert bias from its token counts summed over `group` (TP x DP x CP).
    public func updateExpertBiases(group: Communicator) throws {
        for router in layers.map(\.router) {
            guard let counts = router.tokensPerExpert else { continue }
            let summed = counts.madeContiguous()
            if group.size > 1 { try group.allReduce(summed, op: .sum).wait() }
            router.updateExpertBias(counts: summed)
        }
    }

    /// The logged aux losses of the iteration that just ran, by Megatron's name: the values recorded (loss /
    /// coefficient) summed over the layers and `group` (TP x DP x CP), over the micro-batches and MoE layers;
    /// the load-balancing losses averaged over the `dataParallel` ranks, the z-loss over the whole group (as
    /// Megatron's metrics tracker). Resets them.
    public func takeLoggedLosses(microBatches: Int, group: Communicator, dataParallel: Int) throws -> [String: Double] {
        var sums: [String: Tensor] = [:]
        for layer in layers {
            for (name, value) in layer.router.takeTrackedLosses() {
                sums[name] = sums[name].map { Ops.binary($0, value, .add) } ?? value
            }
        }
        guard !sums.isEmpty else { return [:] }
        let names = sums.keys.sorted()
        let packed = Ops.concat(names.map { sums[$0]!.cast(to: .float32).reshaped([1]) }, dim: 0)
        if group.size > 1 { try group.allReduce(packed, op: .sum).wait() }
        let values = packed.floats()
        return Dictionary(uniqueKeysWithValues: zip(names, values).map { name, value in
            let ranks = name == "z_loss" ? group.size : dataParallel
            return (name, Double(value) / Double(microBatches * layers.count * ranks))
        })
    }
}
