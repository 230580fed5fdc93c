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
    /// This rank's experts: all of them, or its share after `Module.distributeExperts`.
    public private(set) var experts: SequentialExperts
    /// The ranks the experts are split over (`.single` until `Module.distributeExperts`).
    public private(set) var expertParallel = ExpertParallelGroup.single
    /// When set, times how long the compute waits for the all-to-all dispatcher's transfers, forward and
    /// backward (`bench train` reports it as the all-to-all share of the step).
    public var dispatchWaitClock: CommunicationWaitClock?
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

    /// This rank's experts on the tokens routed to them, the outputs summed back per token: on one rank
    /// directly, else through the expert-parallel group's dispatcher.
    private func routedExperts(_ tokens: Tensor, batch: Int) -> Tensor {
        let routed = router(tokens, batch: batch)
        guard let comm = expertParallel.communicator, comm.size > 1 else {
            return localExperts(tokens, probs: routed.probs, map: routed.routingMap.floats())
        }
        switch expertParallel.dispatcher {
        case .allgather:
            let all = localExperts(ExpertCollectives.allGather(tokens, over: comm),
                                   probs: ExpertCollectives.allGather(routed.probs, over: comm),
                                   map: comm.allGathered(routed.routingMap, dim: 0).floats())
            return ExpertCollectives.reduceScatter(all, over: comm)
        case .alltoall:
            return AllToAllDispatch(layer: self, comm: comm, tokens: tokens, routed: routed).run()
        }
    }

    /// Every local expert on the rows of `tokens [N, hidden]` that `map` (`[N, experts]` row-major, 0/1) routes
    /// to it (token order kept within each expert, as Megatron's permute), the outputs summed back per row.
    private func localExperts(_ tokens: Tensor, probs: Tensor, map: [Float]) -> Tensor {
        let count = moe.numExperts, first = firstLocalExpert
        var outputs: [Tensor] = [], rows: [Int] = []
        for (l, expert) in experts.localExperts.enumerated() {
            var chosen = (0..<tokens.size(0)).filter { map[$0 * count + first + l] != 0 }
            var expertProbs: Tensor
            if chosen.isEmpty {
                // An expert no token chose still runs, on one token at probability 0: it adds exactly 0 and gets
                // zero gradients, as Megatron's empty expert does, so every rank reduces the same gradients.
                chosen = [0]
                expertProbs = Tensor.zeros([1, 1], dtype: probs.dtype, device: tokens.device)
            } else {
                expertProbs = TokenPermutation.select(probs.narrow(1, start: first + l, length: 1),
                                                      rows: TokenPermutation.index(chosen, on: tokens.device))
            }
            outputs.append(expert(TokenPermutation.select(tokens, rows: TokenPermutation.index(chosen, on: tokens.device)),
                                  probs: expertProbs))
            rows += chosen
        }
        return TokenPermutation.combine(concat(outputs, dim: 0), rows: TokenPermutation.index(rows, on: tokens.device),
                                        tokens: tokens.size(0))
    }

    /// Keeps only `group`'s share of the experts (`Module.distributeExperts`).
    func distribute(over group: ExpertParallelGroup) {
        precondition(experts.localExperts.count == moe.numExperts, "the experts are distributed already")
        let local = group.localExperts(of: moe.numExperts)
        experts = SequentialExperts(Array(experts.localExperts[local]), firstNumber: local.lowerBound)
        expertParallel = group
        if !group.expertTensorParallel { experts.setAttributesOfAllParameters { $0.partialGradient = false } }
    }

    /// The global number of this rank's first expert (Megatron's `local_expert_indices[0]`).
    public var firstLocalExpert: Int { expertParallel.localExperts(of: moe.numExperts).lowerBound }
}

/// Megatron's `SequentialMLP`: the local experts, named `local_experts.N` by their global number N (the number
/// Megatron's checkpoints give them), so a checkpoint reshards across expert-parallel sizes by name.
public final class SequentialExperts: Module {
    public let localExperts: [ExpertMLP]
    private let list: ModuleList

    init(_ experts: [ExpertMLP], firstNumber: Int = 0) {
        localExperts = experts
        list = ModuleList(experts, firstNumber: firstNumber)
    }

    override public var children: [(String, Module)] { [("local_experts", list)] }
}

/// Modules named by their position (PyTorch's `ModuleList`).
final class ModuleList: Module {
    let modules: [Module]
    let firstNumber: Int

    init(_ modules: [Module], firstNumber: Int = 0) {
        self.modules = modules
        self.firstNumber = firstNumber
    }

    override var children: [(String, Module)] { modules.enumerated().map { ("\(firstNumber + $0.offset)", $0.element) } }
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
