import MegatronCUDA
import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// How routed tokens reach experts on other expert-parallel ranks (`--moe-token-dispatcher-type`).
public enum TokenDispatcherType: String, Sendable, Codable, CaseIterable {
    /// Every rank all-gathers the group's tokens and runs its experts on those routed to them; the outputs are
    /// reduce-scattered back (`MoEAllGatherTokenDispatcher`).
    case allgather
    /// Each token goes only to the ranks holding its experts, with uneven all-to-alls there and back
    /// (`MoEAlltoAllTokenDispatcher`).
    case alltoall
}

/// The expert-parallel group a model's MoE layers are split over: rank r of `size` holds experts
/// `r·E/size ..< (r+1)·E/size` (Megatron's `local_expert_indices`), and the dispatcher moves tokens to them.
///
/// ```swift
/// let ep = ExpertParallelGroup(state.expert, dispatcher: .alltoall, expertTensorParallel: state.expertTensor.size > 1)
/// try model.distributeExperts(over: ep)
/// ```
public struct ExpertParallelGroup {
    /// The ranks splitting the experts; nil for one rank.
    public let communicator: Communicator?
    public let dispatcher: TokenDispatcherType
    /// The experts are repeated whole on every rank of the expert-tensor-parallel group, which is the
    /// tensor-parallel group (`--expert-tensor-parallel-size` = TP); each copy sees only its rank's positions
    /// under sequence parallelism, so their gradients are summed over that group (as Megatron's split experts
    /// give). False for `--expert-tensor-parallel-size 1`: every rank's experts are its own.
    public let expertTensorParallel: Bool

    public init(_ communicator: Communicator?, dispatcher: TokenDispatcherType = .alltoall, expertTensorParallel: Bool = false) {
        self.communicator = communicator
        self.dispatcher = dispatcher
        self.expertTensorParallel = expertTensorParallel
    }

    /// One rank holds every expert.
    public static var single: ExpertParallelGroup { ExpertParallelGroup(nil) }

    public var size: Int { communicator?.size ?? 1 }
    public var rank: Int { communicator?.rank ?? 0 }

    /// The global numbers of this rank's experts out of `numExperts`.
    public func localExperts(of numExperts: Int) -> Range<Int> {
        let count = numExperts / size
        return (rank * count)..<((rank + 1) * count)
    }
}

extension Module {
    /// Keeps in every MoE layer below this module only `group`'s share of the experts (the rank's experts
    /// keep the weights they have, so a model built whole and then distributed equals the single-rank model).
    /// Throws when the experts do not split evenly.
    public func distributeExperts(over group: ExpertParallelGroup) throws {
        for layer in moeLayers {
            guard layer.moe.numExperts % group.size == 0 else {
                throw ConfigError("num_experts (\(layer.moe.numExperts)) must be divisible by the expert model "
                    + "parallel size (\(group.size))")
            }
            layer.distribute(over: group)
        }
    }
}

/// Differentiable moves of rows between expert-parallel ranks.
enum ExpertCollectives {
    /// `x`'s row runs `inputSplits[j]` to rank j; returns the runs `outputSplits[j]` from rank j. The gradient
    /// goes back by the reverse all-to-all. `clock` times the compute's waits on both.
    static func allToAll(_ x: Tensor, inputSplits: [Int], outputSplits: [Int], over comm: Communicator,
                         clock: CommunicationWaitClock? = nil) -> Tensor {
        let out = exchange(x.detached(), inputSplits: inputSplits, outputSplits: outputSplits, comm, clock)
        return record("expertAllToAll", inputs: [x], output: out) { g in
            [exchange(g, inputSplits: outputSplits, outputSplits: inputSplits, comm, clock)]
        }
    }

    /// Every rank's `x` stacked along rows; the gradient is reduce-scattered back.
    static func allGather(_ x: Tensor, over comm: Communicator) -> Tensor {
        record("expertAllGather", inputs: [x], output: comm.allGathered(x.detached(), dim: 0)) { g in
            [comm.reduceScattered(g, dim: 0)]
        }
    }

    /// The sum over the ranks of `x`, of which this rank keeps its row block; the gradient is all-gathered.
    static func reduceScatter(_ x: Tensor, over comm: Communicator) -> Tensor {
        record("expertReduceScatter", inputs: [x], output: comm.reduceScattered(x.detached(), dim: 0)) { g in
            [comm.allGathered(g, dim: 0)]
        }
    }

    private static func exchange(_ x: Tensor, inputSplits: [Int], outputSplits: [Int], _ comm: Communicator,
                                 _ clock: CommunicationWaitClock?) -> Tensor {
        let input = freshCopy(x)
        var shape = x.shape
        shape[0] = outputSplits.reduce(0, +)
        let out = Tensor.zeros(shape, dtype: x.dtype, device: x.device)
        do {
            let work = try comm.allToAll(input, inputSplits: inputSplits, into: out, outputSplits: outputSplits)
            if let clock { try clock.measure { try work.wait() } } else { try work.wait() }
        } catch {
            exitWithError("expert-parallel all-to-all over \(comm.size) ranks (rank \(comm.rank)) failed: \(error)")
        }
        return out
    }
}

extension Module {
    /// Paths of the parameters that belong to one expert (`ParameterAttributes.expert`).
    public func expertParameterNames() -> Set<String> {
        Set(namedParameterAttributes().filter(\.attributes.expert).map(\.name))
    }
}
