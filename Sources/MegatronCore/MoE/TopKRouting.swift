import Foundation
import MegatronAutograd
import MegatronTensor

/// What a router hands the experts: dense probabilities `[tokens, experts]` (zero off each token's chosen
/// experts) and the 0/1 routing map.
public struct RouterOutput {
    public var probs: Tensor
    public var routingMap: Tensor
}

/// The routing math of Megatron Core's `moe_utils.py`, on fp32 logits `[tokens, experts]`: top-k with the
/// score function (`topk_routing_with_score_function`), group-limited top-k, token dropping at a capacity
/// (`apply_router_token_dropping`), and the load-balancing and z losses. Maps are 0/1 fp32 tensors.
enum TopKRouting {
    /// Picks `config.topk` experts per token and their probabilities; `expertBias` (sigmoid only) shifts
    /// the choice, not the probabilities.
    static func topk(_ logits: Tensor, config: MoEConfig, expertBias: Tensor?) -> RouterOutput {
        let k = config.topk
        var probs: Tensor, indices: Tensor
        switch config.scoreFunction {
        case .softmax where config.preSoftmax:
            (probs, indices) = limitedTopk(Functional.softmax(logits), config)
        case .softmax:
            let chosen = limitedTopk(logits, config)
            (probs, indices) = (Functional.softmax(chosen.values), chosen.indices)
        case .sigmoid:
            let scores = logits.sigmoid()
            if let expertBias {
                indices = withoutGrad { limitedTopk(scores.detached() + expertBias, config).indices }
                probs = Functional.gather(scores, dim: 1, index: indices)
            } else {
                (probs, indices) = limitedTopk(scores, config)
            }
            if k > 1 { probs = probs / (probs.sum(dims: [-1], keepDim: true) + 1e-20) }
        }
        if let factor = config.topkScalingFactor { probs = probs * factor }
        let zeros = Tensor.zeros(logits.shape, dtype: logits.dtype, device: logits.device)
        return RouterOutput(probs: Functional.scatterAdd(zeros, dim: 1, index: indices, source: probs),
                      routingMap: mapOf(indices, shape: logits.shape, device: logits.device))
    }

    /// The top-k of `scores`, among the experts of each token's best `groupTopk` groups when group-limited
    /// (a group's score is the sum of its top `topk / groupTopk` scores).
    static func limitedTopk(_ scores: Tensor, _ config: MoEConfig) -> (values: Tensor, indices: Tensor) {
        guard let groups = config.numGroups, let groupTopk = config.groupTopk else {
            return Functional.topk(scores, k: config.topk)
        }
        let (tokens, experts) = (scores.size(0), scores.size(1))
        let allowed = withoutGrad { () -> Tensor in
            let grouped = scores.detached().reshaped([tokens, groups, experts / groups])
            let groupScores = Ops.reduce(Ops.topk(grouped, k: config.topk / groupTopk).values, dims: [-1], keepDim: false, .sum)
            let chosen = mapOf(Ops.topk(groupScores, k: groupTopk).indices, shape: [tokens, groups], device: scores.device)
            return chosen.unsqueezed(-1).expanded(to: [tokens, groups, experts / groups]).reshaped([tokens, experts])
        }
        let masked = scores.maskedFill(allowed.eq(Tensor(scalar: 0)), -Float.infinity)
        return Functional.topk(masked, k: config.topk)
    }

    /// Drops the tokens over each expert's capacity `ceil(T·k/E · factor)` by `config.dropPolicy`, or with
    /// `padToCapacity` routes exactly that many tokens to every expert.
    static func dropTokens(_ routed: RouterOutput, config: MoEConfig, capacityFactor: Double) -> RouterOutput {
        let (tokens, experts) = (routed.probs.size(0), routed.probs.size(1))
        let capacity = Int((Double(tokens * config.topk) / Double(experts) * capacityFactor).rounded(.up))
        let kept = withoutGrad { () -> Tensor in
            guard capacity <= tokens else { return Tensor.full([tokens, experts], 1, device: routed.probs.device) }
            // Top-capacity over the token axis: by probability, or by the 0/1 map, earliest tokens first.
            let ranked = (config.dropPolicy == .probs ? routed.probs.detached() : routed.routingMap).transposed(0, 1).madeContiguous()
            return mapOf(Ops.topk(ranked, k: capacity).indices, shape: [experts, tokens], device: ranked.device)
                .transposed(0, 1).madeContiguous()
        }
        let map = config.padToCapacity ? kept : Ops.binary(routed.routingMap, kept, .mul)
        return RouterOutput(probs: routed.probs * map, routingMap: map)
    }

    /// A 0/1 `[rows, width]` map with ones at `indices [rows, n]` along the last dimension.
    static func mapOf(_ indices: Tensor, shape: [Int], device: Device) -> Tensor {
        let ones = Tensor.full(indices.shape, 1, device: device)
        return Ops.scatterAdd(Tensor.zeros(shape, device: device), dim: -1, index: indices, source: ones)
    }

    /// The scores the load-balancing losses use (`compute_routing_scores_for_aux_loss`): softmax, or sigmoid
    /// normalised over all experts; and the plain top-k map on them.
    static func auxLossScores(_ logits: Tensor, config: MoEConfig) -> (scores: Tensor, routingMap: Tensor) {
        let scores: Tensor
        switch config.scoreFunction {
        case .softmax: scores = Functional.softmax(logits)
        case .sigmoid:
            let s = logits.sigmoid()
            scores = s / (s.sum(dims: [-1], keepDim: true) + 1e-20)
        }
        let indices = Ops.topk(scores.detached(), k: config.topk).indices
        return (scores, mapOf(indices, shape: logits.shape, device: logits.device))
    }

    /// Switch-style load balancing (`switch_load_balancing_loss_func`):
    /// `coeff · E / (k · T²) · Σ_e (Σ_t p[t,e]) · n_e`, the probabilities this rank's, the counts `n` and the
    /// token total `T` over the sequence-parallel ranks.
    static func switchLoss(scores: Tensor, tokensPerExpert: Tensor, totalTokens: Int, topk: Int, experts: Int,
                           coefficient: Float) -> Tensor {
        let tokens = Float(totalTokens)
        let perExpert = scores.sum(dims: [0]) * tokensPerExpert
        return perExpert.sum() * (Float(experts) * coefficient / (Float(topk) * tokens * tokens))
    }

    /// `mean_tokens(logsumexp(logits)²) · coeff` (`z_loss_func`).
    static func zLoss(_ logits: Tensor, coefficient: Float) -> Tensor {
        let rowMax = withoutGrad { Ops.reduce(logits.detached(), dims: [-1], keepDim: true, .max) }
        let logSumExp = (logits - rowMax).exp().sum(dims: [-1]).log() + rowMax.reshaped([-1])
        return (logSumExp * logSumExp).mean() * coefficient
    }
}
