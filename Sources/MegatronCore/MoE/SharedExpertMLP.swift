import MegatronAutograd
import MegatronTensor

/// Megatron Core's `SharedExpertMLP`: the expert every token goes through, its output optionally scaled per
/// token by `sigmoid(x · gate_weight)` (`moe_shared_expert_gate`, the gate of Qwen2-MoE's shared expert).
/// Its parameters are named as Megatron's: `linear_fc1`, `linear_fc2` and `gate_weight [1, hidden]`.
public final class SharedExpertMLP: Module {
    public let mlp: ExpertMLP
    /// nil without the gate.
    public let gateWeight: Tensor?

    public init(config: TransformerConfig, ffnHiddenSize: Int, gated: Bool, generator: PhiloxGenerator) {
        mlp = ExpertMLP(config: config, ffnHiddenSize: ffnHiddenSize, isExpert: false, generator: generator)
        gateWeight = gated ? parameter(config.initMethod.draw([1, config.hiddenSize], dtype: config.paramsDType, generator: generator)) : nil
    }

    // The MLP's layers sit directly under this module, as in Megatron's state dict (`shared_experts.linear_fc1`).
    override public var children: [(String, Module)] { mlp.children }
    override public var parameters: [(String, Tensor)] { gateWeight.map { [("gate_weight", $0)] } ?? [] }

    /// `tokens [n, hidden] -> [n, hidden]`.
    public func callAsFunction(_ tokens: Tensor) -> Tensor {
        runForward {
            let out = mlp(tokens)
            guard let gateWeight else { return out }
            return out * Functional.linear(tokens, weight: gateWeight, bias: nil).sigmoid()
        }
    }
}
