import Foundation
import MegatronTensor

/// The mixture-of-experts part of Mixtral, Qwen2-MoE and Qwen3-MoE checkpoints, read into and written from
/// `MoEConfig` and Megatron's parameter names (`mlp.router.weight`,
/// `mlp.experts.local_experts.E.linear_fc1.weight` = [gate; up], `mlp.shared_experts.*`).
///
/// Their routers are Megatron's softmax `TopKRouter`: Mixtral's, and Qwen's with `norm_topk_prob`, renormalise
/// the top-k probabilities (Megatron's softmax over the top-k logits); Qwen's without it keep the softmax over
/// all experts (`--moe-router-pre-softmax`). Qwen2-MoE's shared expert and its sigmoid gate are Megatron's
/// shared expert with `moe_shared_expert_gate`.
extension HuggingFaceConfig {
    /// The MoE layers `config.json` describes; nil for a dense architecture.
    static func mixtureOfExperts(_ f: ConfigFields, _ architecture: HuggingFaceGPT.Architecture, numLayers: Int) throws -> MoEConfig? {
        guard architecture.isMixtureOfExperts else { return nil }
        var moe: MoEConfig
        if architecture == .mixtral {
            moe = MoEConfig(numExperts: try f.int("num_local_experts"), ffnHiddenSize: try f.int("intermediate_size"),
                            layers: Array(repeating: true, count: numLayers))
            let jitter = try f.double("router_jitter_noise", default: 0)
            if jitter != 0 {
                throw f.refusal("router_jitter_noise", "\(jitter) (random noise on the router's input in training) is not supported: set it to 0")
            }
        } else {
            // transformers 5 writes Qwen3-MoE's count as num_local_experts.
            let experts = try f.optionalInt("num_experts") ?? f.int("num_local_experts")
            moe = MoEConfig(numExperts: experts, ffnHiddenSize: try f.int("moe_intermediate_size"),
                            layers: try sparseLayers(f, numLayers: numLayers))
        }
        moe.topk = try f.int("num_experts_per_tok")
        if moe.topk > moe.numExperts {
            throw f.refusal("num_experts_per_tok", "\(moe.topk) exceeds the \(moe.numExperts) experts")
        }
        let renormalised = try architecture == .mixtral || f.bool("norm_topk_prob", default: false)
        if renormalised && moe.topk == 1 {
            throw f.refusal("num_experts_per_tok", "1 with renormalised top-k probabilities (every weight 1) is not supported")
        }
        moe.preSoftmax = !renormalised
        // Training only (transformers adds it with output_router_logits): Megatron's aux_loss at this coefficient.
        let coefficient = try f.double("router_aux_loss_coef", default: 0.001)
        if coefficient != 0 { moe.loadBalancing = [.init(kind: .auxLoss, coefficient: Float(coefficient))] }
        if architecture == .qwen2MoE {
            moe.sharedExpertIntermediateSize = try f.int("shared_expert_intermediate_size")
            moe.sharedExpertGate = true
        }
        return moe
    }

    /// Qwen's layer pattern: layer i is MoE unless `mlp_only_layers` lists it, and only if `(i + 1)` is a
    /// multiple of `decoder_sparse_step`.
    static func sparseLayers(_ f: ConfigFields, numLayers: Int) throws -> [Bool] {
        let step = try f.optionalInt("decoder_sparse_step") ?? 1
        var dense: [Int] = []
        if f.isSet("mlp_only_layers") {
            guard let list = f.json["mlp_only_layers"] as? [Int] else {
                throw f.refusal("mlp_only_layers", "is \(f.json["mlp_only_layers"]!), not a list of layer indices")
            }
            if let outside = list.first(where: { !(0..<numLayers).contains($0) }) {
                throw f.refusal("mlp_only_layers", "lists layer \(outside), outside 0..<num_hidden_layers (\(numLayers))")
            }
            dense = list
        }
        return (0..<numLayers).map { !dense.contains($0) && ($0 + 1) % step == 0 }
    }
}

extension HuggingFaceGPT {
    /// Where an architecture keeps a layer's experts: the block's prefix and the [gate, up, down] projections.
    static func expertNames(_ architecture: Architecture) -> (block: String, projections: [String]) {
        architecture == .mixtral ? ("block_sparse_moe.", ["w1", "w3", "w2"]) : ("mlp.", ["gate_proj", "up_proj", "down_proj"])
    }

    /// Layer `i`'s router, experts and shared expert, from Hugging Face's names into Megatron's.
    static func takeMoE(_ w: inout HuggingFaceTensors, layer i: Int, _ moe: MoEConfig, _ architecture: Architecture,
                        hidden h: Int, into out: inout [String: Tensor]) throws {
        let names = expertNames(architecture)
        let (p, m) = ("layers.\(i)." + names.block, "decoder.layers.\(i).mlp.")
        out[m + "router.weight"] = try w.take(p + "gate.weight", [moe.numExperts, h])
        for e in 0..<moe.numExperts {
            try takeSwiGLU(&w, p + "experts.\(e).", names.projections, hidden: h, ffn: moe.ffnHiddenSize,
                           as: m + "experts.local_experts.\(e).", into: &out)
        }
        if let shared = moe.sharedExpertIntermediateSize {
            try takeSwiGLU(&w, p + "shared_expert.", ["gate_proj", "up_proj", "down_proj"], hidden: h, ffn: shared,
                           as: m + "shared_experts.", into: &out)
            if moe.sharedExpertGate == true {
                out[m + "shared_experts.gate_weight"] = try w.take(p + "shared_expert_gate.weight", [1, h])
            }
        }
    }

    /// Layer `i`'s MoE tensors back in Hugging Face's names, under `model.layers.i.`.
    static func putMoE(_ get: (String) throws -> Tensor, layer i: Int, _ moe: MoEConfig, _ architecture: Architecture,
                       into out: inout [String: Tensor]) throws {
        let names = expertNames(architecture)
        let (p, m) = ("model.layers.\(i)." + names.block, "decoder.layers.\(i).mlp.")
        out[p + "gate.weight"] = try get(m + "router.weight")
        for e in 0..<moe.numExperts {
            try putSwiGLU(get, m + "experts.local_experts.\(e).", as: p + "experts.\(e).", names.projections, into: &out)
        }
        if moe.sharedExpertIntermediateSize != nil {
            try putSwiGLU(get, m + "shared_experts.", as: p + "shared_expert.", ["gate_proj", "up_proj", "down_proj"], into: &out)
            if moe.sharedExpertGate == true { out[p + "shared_expert_gate.weight"] = try get(m + "shared_experts.gate_weight") }
        }
    }

    /// Megatron's `linear_fc1` ([gate; up]) and `linear_fc2` under `source` as the `names` [gate, up, down]
    /// projections under `target`.
    static func putSwiGLU(_ get: (String) throws -> Tensor, _ source: String, as target: String, _ names: [String],
                          into out: inout [String: Tensor]) throws {
        let fc1 = try get(source + "linear_fc1.weight")
        let half = fc1.shape[0] / 2
        out[target + names[0] + ".weight"] = fc1.narrowed(0, start: 0, length: half).madeContiguous()
        out[target + names[1] + ".weight"] = fc1.narrowed(0, start: half, length: half).madeContiguous()
        out[target + names[2] + ".weight"] = try get(source + "linear_fc2.weight")
    }

    /// What in `config`'s experts `architecture` cannot express (a dense architecture: that there are any).
    static func moeDifferences(_ c: TransformerConfig, _ architecture: Architecture) -> [String] {
        guard architecture.isMixtureOfExperts else { return c.moe == nil ? [] : ["mixture-of-experts MLPs (--num-experts)"] }
        guard let moe = c.moe else { return ["dense MLPs only (no --num-experts)"] }
        var found: [String] = []
        func require(_ ok: Bool, _ what: String) { if !ok { found.append(what) } }
        require(moe.scoreFunction == .softmax, "sigmoid router scores")
        require(moe.numGroups == nil, "group-limited routing")
        require(moe.topkScalingFactor == nil, "a top-k scaling factor")
        require(!moe.expertBias, "an expert bias")
        require(moe.capacityFactor == nil, "token dropping at a capacity factor")
        switch architecture {
        case .mixtral:
            require(moe.layers.allSatisfy { $0 }, "dense layers among the MoE layers (--moe-layer-freq)")
            require(!moe.preSoftmax, "top-k probabilities not renormalised (--moe-router-pre-softmax)")
            require(moe.sharedExpertIntermediateSize == nil, "a shared expert")
        case .qwen2MoE:
            require(moe.sharedExpertIntermediateSize != nil && moe.sharedExpertGate == true,
                    "no gated shared expert (Qwen2-MoE's shared expert has a sigmoid gate)")
        default:
            require(moe.sharedExpertIntermediateSize == nil, "a shared expert")
        }
        return found
    }

    /// The `config.json` fields of the experts, for `configJSON`.
    static func moeConfigJSON(_ architecture: Architecture, _ config: TransformerConfig) -> [String: Any] {
        guard architecture.isMixtureOfExperts, let moe = config.moe else { return [:] }
        var json: [String: Any] = ["num_experts_per_tok": moe.topk, "output_router_logits": false]
        // transformers refuses an integer where it types a float, and JSONSerialization writes 0.0 as 0: a zero
        // coefficient (and Mixtral's router_jitter_noise, always 0) is left to transformers' default instead.
        let coefficient = moe.coefficient(.auxLoss)
        if coefficient != 0 { json["router_aux_loss_coef"] = decimal(coefficient) }
        if architecture == .mixtral {
            json.merge(["num_local_experts": moe.numExperts, "intermediate_size": moe.ffnHiddenSize]) { _, b in b }
            return json
        }
        json.merge([
            "num_experts": moe.numExperts, "moe_intermediate_size": moe.ffnHiddenSize, "norm_topk_prob": !moe.preSoftmax,
            "decoder_sparse_step": 1, "mlp_only_layers": moe.layers.indices.filter { !moe.layers[$0] },
        ]) { _, b in b }
        if architecture == .qwen2MoE {
            json["shared_expert_intermediate_size"] = moe.sharedExpertIntermediateSize
            json["qkv_bias"] = config.addQKVBias
        }
        return json
    }
}
