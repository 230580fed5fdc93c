import MegatronAutograd
import MegatronTensor

/// A mixture-of-experts MLP (Megatron Core's `MoELayer` with `SequentialMLP` experts, on one rank): the router
/// picks each token's experts, each expert runs on the tokens routed to it, and their outputs, weighted by the
/// routing probabilities, add up per token; a shared expert, if any, adds its output for every token.
///
/// Tokens are routed in Megatron's order (`[seq, batch]` flattened), which the sequence-level aux loss and
/// token dropping depend on.
///
/// ```swift
/// var spec = TransformerBlockSpec.gpt(config)
/// spec.layers[0].mlp = .moe          // or let TransformerBlockSpec.gpt follow config.moe
/// ```
public final class MoELayer: Module, FeedForward {
    public let moe: MoEConfig
    public let router: TopKRouter
    /// All experts, on one rank.
    public let experts: SequentialExperts
    public let sharedExperts: SharedExpertMLP?

    /// Under sequence parallelism every tensor-parallel rank holds the router and all experts whole and routes
    /// its own positions (the same results as Megatron's tensor-parallel experts); their gradients are then
    /// partial, summed over the group after backward.
    public init(config: TransformerConfig, moe: MoEConfig, generator: PhiloxGenerator, tensorParallel: TensorParallelGroup = .single) {
        self.moe = moe
        router = TopKRouter(config: config, moe: moe, generator: generator, tensorParallel: tensorParallel)
        experts = SequentialExperts((0..<moe.numExperts).map { _ in
            ExpertMLP(config: config, ffnHiddenSize: moe.ffnHiddenSize, isExpert: true, generator: generator)
        })
        sharedExperts = moe.sharedExpertIntermediateSize.map {
            SharedExpertMLP(config: config, ffnHiddenSize: $0, gated: moe.sharedExpertGate == true, generator: generator)
        }
        if tensorParallel.sequenceParallel {
            for module in [router, experts] as [Module] + (sharedExperts.map { [$0] } ?? []) {
                module.setAttributesOfAllParameters { $0.partialGradient = true }
            }
        }
    }

    override public var children: [(String, Module)] {
        [("router", router), ("experts", experts)] + (sharedExperts.map { [("shared_experts", $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        runForward {
            let (batch, sequence, hidden) = (x.size(0), x.size(1), x.size(2))
            let tokens = x.transpose(0, 1).reshape([sequence * batch, hidden])
            var out = routedExperts(tokens, batch: batch)
            if let sharedExperts { out = out + sharedExperts(tokens) }
            return out.reshape([sequence, batch, hidden]).transpose(0, 1)
        }
    }

    /// Every expert on the tokens routed to it (token order kept within each expert, as Megatron's permute),
    /// the outputs summed back per token.
    private func routedExperts(_ tokens: Tensor, batch: Int) -> Tensor {
        let routed = router(tokens, batch: batch)
        let map = routed.routingMap.floats(), count = moe.numExperts
        var outputs: [Tensor] = [], rows: [Int] = []
        for (e, expert) in experts.localExperts.enumerated() {
            var chosen = (0..<tokens.size(0)).filter { map[$0 * count + e] != 0 }
            var probs: Tensor
            if chosen.isEmpty {
                // An expert no token chose still runs, on one token at probability 0: it adds exactly 0 and gets
                // zero gradients, as Megatron's empty expert does, so every rank reduces the same gradients.
                chosen = [0]
                probs = Tensor.zeros([1, 1], dtype: routed.probs.dtype, device: tokens.device)
            } else {
                probs = TokenPermutation.select(routed.probs.narrow(1, start: e, length: 1),
                                                rows: Tensor(shape: [chosen.count], ints: chosen).to(tokens.device))
            }
            let index = Tensor(shape: [chosen.count], ints: chosen).to(tokens.device)
            outputs.append(expert(TokenPermutation.select(tokens, rows: index), probs: probs))
            rows += chosen
        }
        let index = Tensor(shape: [rows.count], ints: rows).to(tokens.device)
        return TokenPermutation.combine(concat(outputs, dim: 0), rows: index, tokens: tokens.size(0))
    }
}

/// Megatron's `SequentialMLP`: the local experts, named `local_experts.N`.
public final class SequentialExperts: Module {
    public let localExperts: [ExpertMLP]
    private let list: ModuleList

    init(_ experts: [ExpertMLP]) {
        localExperts = experts
        list = ModuleList(experts)
    }

    override public var children: [(String, Module)] { [("local_experts", list)] }
}

/// Modules named by their position (PyTorch's `ModuleList`).
final class ModuleList: Module {
    let modules: [Module]

    init(_ modules: [Module]) { self.modules = modules }

    override var children: [(String, Module)] { modules.enumerated().map { ("\($0.offset)", $0.element) } }
}

extension ModuleSpec where Built == any FeedForward {
    /// A mixture-of-experts MLP as `context.config.moe` describes it.
    public static var moe: Self {
        Self { context in
            guard let moe = context.config.moe else { preconditionFailure("the MoE spec needs config.moe") }
            return MoELayer(config: context.config, moe: moe, generator: context.generator, tensorParallel: context.tensorParallel)
        }
    }
}

extension Module {
    /// Changes the attributes of every parameter of this module and the modules below it.
    func setAttributesOfAllParameters(_ change: (inout ParameterAttributes) -> Void) {
        setAttributesOfParameters(change)
        for (_, child) in children { child.setAttributesOfAllParameters(change) }
    }

    /// The MoE layers below this module, first layer first.
    public var moeLayers: [MoELayer] {
        children.flatMap { _, child in (child as? MoELayer).map { [$0] } ?? child.moeLayers }
    }
}
