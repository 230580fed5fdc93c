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
    /// to it, each row scaled by its probability in `probs [N, experts]`, the outputs summed back per row.
    private func localExperts(_ tokens: Tensor, probs: Tensor, map: [Float]) -> Tensor {
        let count = moe.numExperts, first = firstLocalExpert, n = tokens.size(0)
        let rows = experts.localExperts.indices.map { l in (0..<n).filter { map[$0 * count + first + l] != 0 } }
        let probRows = rows.enumerated().map { l, chosen in chosen.map { $0 * count + first + l } }
        return runExperts(tokens, rows: rows, probs: probs.reshape([n * count, 1]), probRows: probRows, padding: 0)
    }

    /// The local experts on the rows of `input [N, hidden]` that `rows` lists per local expert (token order kept
    /// within each, as Megatron's permute), row `rows[l][i]` scaled by row `probRows[l][i]` of `probs [P, 1]`;
    /// the outputs summed back per row of `input`. An expert given no rows runs on row `padding` at probability
    /// 0: it adds exactly 0 and gets zero gradients, as Megatron's empty expert does, so every rank reduces the
    /// same gradients.
    func runExperts(_ input: Tensor, rows: [[Int]], probs: Tensor, probRows: [[Int]], padding: Int) -> Tensor {
        let device = input.device, zeroProbability = probs.size(0)
        let anyEmpty = rows.contains { $0.isEmpty }
        let probSource = anyEmpty ? concat([probs, Tensor.zeros([1, 1], dtype: probs.dtype, device: device)], dim: 0) : probs
        let order = TokenPermutation.index(rows.flatMap { $0.isEmpty ? [padding] : $0 }, on: device)
        let probOrder = zip(rows, probRows).flatMap { $0.isEmpty ? [zeroProbability] : $1 }
        let out = experts(TokenPermutation.select(input, rows: order),
                          probs: TokenPermutation.select(probSource, rows: TokenPermutation.index(probOrder, on: device)),
                          counts: rows.map { max($0.count, 1) })
        return TokenPermutation.combine(out, rows: order, tokens: input.size(0))
    }

    /// Keeps only `group`'s share of the experts (`Module.distributeExperts`).
    func distribute(over group: ExpertParallelGroup) {
        precondition(experts.localExperts.count == moe.numExperts, "the experts are distributed already")
        let local = group.localExperts(of: moe.numExperts)
        let grouped = experts.groupedGemm
        experts = SequentialExperts(Array(experts.localExperts[local]), firstNumber: local.lowerBound)
        experts.groupedGemm = grouped
        expertParallel = group
        if !group.expertTensorParallel { experts.setAttributesOfAllParameters { $0.partialGradient = false } }
    }

    /// The global number of this rank's first expert (Megatron's `local_expert_indices[0]`).
    public var firstLocalExpert: Int { expertParallel.localExperts(of: moe.numExperts).lowerBound }
}

/// Megatron's `SequentialMLP`: the local experts, named `local_experts.N` by their global number N (the number
/// Megatron's checkpoints give them), so a checkpoint reshards across expert-parallel sizes by name.
///
/// With `groupedGemm` (`--moe-grouped-gemm`) all experts' FC1 and FC2 run as grouped GEMMs over the permuted
/// tokens instead of one expert after another: the same math (on the CPU the same numbers), far fewer and fuller
/// launches on a GPU. It is an execution choice only: the parameters keep these names and shapes (Megatron's
/// `TEGroupedMLP` names its weights `linear_fc1.weight0`..., a layout this build does not use).
public final class SequentialExperts: Module {
    public let localExperts: [ExpertMLP]
    /// Whether the experts run as grouped GEMMs (`--moe-grouped-gemm`).
    public var groupedGemm = false
    private let list: ModuleList

    init(_ experts: [ExpertMLP], firstNumber: Int = 0) {
        localExperts = experts
        list = ModuleList(experts, firstNumber: firstNumber)
    }

    override public var children: [(String, Module)] { [("local_experts", list)] }

    /// `permuted [R, hidden]`: rows in consecutive groups of `counts`, one group per local expert, each row's
    /// activation scaled by its `probs [R, 1]`; returns each row's expert output, `[R, hidden]`.
    func callAsFunction(_ permuted: Tensor, probs: Tensor, counts: [Int]) -> Tensor {
        runForward { groupedGemm ? grouped(permuted, probs: probs, counts: counts) : sequential(permuted, probs: probs, counts: counts) }
    }

    /// Megatron's `SequentialMLP`: each expert on its own rows.
    private func sequential(_ permuted: Tensor, probs: Tensor, counts: [Int]) -> Tensor {
        let outputs = zip(localExperts, Ops.groupRanges(counts)).compactMap { expert, rows -> Tensor? in
            guard !rows.isEmpty else { return nil }
            return expert(permuted.narrow(0, start: rows.lowerBound, length: rows.count),
                          probs: probs.narrow(0, start: rows.lowerBound, length: rows.count))
        }
        return concat(outputs, dim: 0)
    }

    /// All experts at once: FC1 as one grouped GEMM, the activation over every row, FC2 as one grouped GEMM.
    private func grouped(_ permuted: Tensor, probs: Tensor, counts: [Int]) -> Tensor {
        let h = Functional.groupedLinear(permuted, weights: localExperts.map(\.linearFC1.weight), counts: counts)
        let activated = ExpertMLP.activation(h, probs: probs, config: localExperts[0].config, dtype: permuted.dtype)
        return Functional.groupedLinear(activated, weights: localExperts.map(\.linearFC2.weight), counts: counts)
    }
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

    /// Runs the experts of every MoE layer below this module as grouped GEMMs (`--moe-grouped-gemm`), or one
    /// after another; the same results either way.
    public func setMoEGroupedGemm(_ grouped: Bool) {
        for layer in moeLayers { layer.experts.groupedGemm = grouped }
    }

    /// The MoE layers below this module, first layer first.
    public var moeLayers: [MoELayer] {
        children.flatMap { _, child in (child as? MoELayer).map { [$0] } ?? child.moeLayers }
    }
}
