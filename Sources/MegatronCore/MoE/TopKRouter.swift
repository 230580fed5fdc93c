import MegatronAutograd
import MegatronTensor

/// Megatron Core's `TopKRouter`: a gate `weight [experts, hidden]` whose logits (in fp32) choose each token's
/// top-k experts and their probabilities, with Megatron's z-loss, load-balancing losses, token dropping and
/// aux-loss-free expert bias, in its order.
///
/// The training losses reach the gradient as Megatron's `MoEAuxLossAutoScaler` does: attached to the
/// probabilities, their gradient is `auxLossBackwardScale` whenever the probabilities' gradient flows (so a
/// recomputed layer gets them too). Their values, divided by their coefficients, are kept for the log line
/// (`takeTrackedLosses`).
///
/// ```swift
/// let router = TopKRouter(config: config, moe: moe, generator: gen)
/// let routed = router(tokens)          // tokens [T, hidden]: probs [T, E], routingMap [T, E] (0/1)
/// ```
public final class TopKRouter: Module {
    public let moe: MoEConfig
    public let weight: Tensor
    /// The aux-loss-free bias (fp32, not trained by the optimizer); nil unless `moe.expertBias`.
    public private(set) var expertBias: Tensor?
    /// Tokens routed to each expert since the last bias update (`local_tokens_per_expert`).
    public private(set) var tokensPerExpert: Tensor?
    /// The gradient the aux losses inject per unit of loss (Megatron's `main_loss_backward_scale`): the
    /// training step sets it to the main loss's backward scale.
    public var auxLossBackwardScale: Float = 1
    /// With `--calculate-per-token-loss` Megatron multiplies the aux losses by the router's token count, as the
    /// gradients are divided by the global batch's tokens afterwards.
    public var auxLossPerToken = false
    /// Sums of the detached logged values (loss / coefficient) by Megatron's metric name, since the last take.
    private var tracked: [String: Tensor] = [:]
    /// Under sequence parallelism each rank routes its own positions; the load-balancing counts and token
    /// totals are summed over the group, and the z-loss averaged (Megatron's `tp_cp_group`).
    let tensorParallel: TensorParallelGroup

    public init(config: TransformerConfig, moe: MoEConfig, generator: PhiloxGenerator, tensorParallel: TensorParallelGroup = .single) {
        self.moe = moe
        self.tensorParallel = tensorParallel
        weight = parameter(config.initMethod.draw([moe.numExperts, config.hiddenSize], dtype: config.paramsDType,
                                                  generator: generator))
        if moe.expertBias {
            expertBias = Tensor.zeros([moe.numExperts]).to(DevicePlacement.current)
            tokensPerExpert = Tensor.zeros([moe.numExperts]).to(DevicePlacement.current)
        }
    }

    override public var parameters: [(String, Tensor)] { [("weight", weight)] }

    /// Routes `tokens [T, hidden]` (Megatron's token order: sequence-major, `[s, b]` flattened) of `batch`
    /// sequences.
    public func callAsFunction(_ tokens: Tensor, batch: Int = 1) -> RouterOutput {
        runForward { route(tokens, batch: batch) }
    }

    private func route(_ tokens: Tensor, batch: Int) -> RouterOutput {
        var logits = Functional.linear(tokens.to(.float32), weight: weight.to(.float32), bias: nil)
        let training = isTraining && GradMode.isEnabled
        if training, let zCoefficient = moe.zLossCoefficient {
            let coefficient = zCoefficient / Float(tensorParallel.size)
            let z = TopKRouting.zLoss(logits, coefficient: coefficient)
            track("z_loss", z / coefficient)
            logits = attach(z, to: logits)
        }
        var routed = TopKRouting.topk(logits, config: moe, expertBias: expertBias)
        if let factor = moe.capacityFactor { routed = TopKRouting.dropTokens(routed, config: moe, capacityFactor: factor) }
        if training, !moe.loadBalancing.isEmpty {
            routed.probs = attachLoadBalancing(logits, probs: routed.probs, batch: batch)
        }
        if let counts = tokensPerExpert, training {
            tokensPerExpert = counts + Ops.reduce(routed.routingMap, dims: [0], keepDim: false, .sum)
        }
        return routed
    }

    private func attachLoadBalancing(_ logits: Tensor, probs: Tensor, batch: Int) -> Tensor {
        let (scores, map) = TopKRouting.auxLossScores(logits, config: moe)
        var probs = probs
        for loss in moe.loadBalancing where loss.coefficient > 0 {
            let value: Tensor
            switch loss.kind {
            case .auxLoss:
                value = TopKRouting.switchLoss(scores: scores, tokensPerExpert: countOverGroup(map),
                                               totalTokens: scores.size(0) * tensorParallel.size, topk: moe.topk,
                                               experts: moe.numExperts, coefficient: loss.coefficient)
            case .seqAuxLoss:
                // Per sequence: the batch folds into the expert axis, and the sum over sequences is averaged.
                let sequence = scores.size(0) / batch
                value = TopKRouting.switchLoss(scores: scores.reshape([sequence, -1]),
                                               tokensPerExpert: countOverGroup(map.reshaped([sequence, -1])),
                                               totalTokens: sequence * tensorParallel.size, topk: moe.topk,
                                               experts: moe.numExperts, coefficient: loss.coefficient)
                    / Float(batch)
            }
            track(loss.kind.loggedName, value / loss.coefficient)
            probs = attach(value, to: probs)
        }
        return probs
    }

    /// Tokens per column of the 0/1 `map`, summed over the tensor-parallel group (`get_tokens_per_expert_and_token_count`).
    private func countOverGroup(_ map: Tensor) -> Tensor {
        let counts = Ops.reduce(map, dims: [0], keepDim: false, .sum)
        guard let communicator = tensorParallel.communicator, communicator.size > 1 else { return counts }
        return communicator.allReduced(counts)
    }

    /// `activation` unchanged, with `loss` riding on it: when the activation's gradient flows back, `loss`
    /// gets gradient `auxLossBackwardScale` (Megatron's `MoEAuxLossAutoScaler`).
    private func attach(_ loss: Tensor, to activation: Tensor) -> Tensor {
        let scale = auxLossBackwardScale * (auxLossPerToken ? Float(activation.size(0)) : 1)
        return record("auxLossAutoScaler", inputs: [activation, loss], output: activation.detached()) { g in
            [g, Tensor.full([], scale, dtype: loss.dtype, device: g.device)]
        }
    }

    private func track(_ name: String, _ value: Tensor) {
        let value = value.detached()
        tracked[name] = tracked[name].map { Ops.binary($0, value, .add) } ?? value
    }

    /// The logged values (loss / coefficient) summed over the forwards since the last call, by Megatron's
    /// metric name; resets them.
    public func takeTrackedLosses() -> [String: Tensor] {
        defer { tracked = [:] }
        return tracked
    }

    /// Megatron's `get_updated_expert_bias`, once per global batch: each expert's bias moves by the update
    /// rate toward the mean load (`bias += sign(mean(n) − n_e) · rate`), `counts` being the tokens per expert
    /// summed over the data-parallel ranks; then the counts restart.
    public func updateExpertBias(counts: Tensor) {
        guard let bias = expertBias else { return }
        withoutGrad {
            let mean = Ops.reduce(counts, dims: [0], keepDim: true, .mean)
            let offset = Ops.binary(mean, counts, .sub)
            let sign = Ops.binary(Ops.compare(offset, Tensor(scalar: 0), .greater).cast(to: .float32),
                                  Ops.compare(offset, Tensor(scalar: 0), .less).cast(to: .float32), .sub)
            expertBias = Ops.binary(bias, Ops.binary(sign, Tensor(scalar: moe.biasUpdateRate), .mul), .add)
            tokensPerExpert = Tensor.zeros([moe.numExperts]).to(bias.device)
        }
    }
}

extension TopKRouter {
    /// Replaces the expert bias (`…mlp.router.expert_bias` of a checkpoint, or a test's).
    public func loadExpertBias(_ bias: Tensor) {
        precondition(expertBias != nil, "the router has no expert bias (moe.expertBias is off)")
        expertBias = bias.to(weight.device)
    }
}
