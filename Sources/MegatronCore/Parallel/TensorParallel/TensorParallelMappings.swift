import MegatronAutograd
import MegatronParallel
import MegatronTensor

/// Megatron Core's tensor-parallel mappings: each is one autograd primitive whose backward is the
/// collective that undoes (or completes) its forward. On a single rank every mapping is the identity.
///
/// Activations here are `[batch, seq, hidden]`, so the sequence dimension of the sequence-parallel
/// mappings is dimension 1 (Megatron's `[seq, batch, hidden]` uses dimension 0).
///
/// ```swift
/// let input = TensorParallelMappings.copyToRegion(x, group)          // before a column-parallel matmul
/// let y = TensorParallelMappings.reduceFromRegion(partial, group)    // after a row-parallel matmul
/// ```
public enum TensorParallelMappings {
    /// The sequence dimension of `[batch, seq, hidden]` activations.
    public static let sequenceDim = 1

    /// Identity forward, all-reduce backward: enters a region where each rank uses the full input.
    public static func copyToRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        return record("copyToTensorParallelRegion", inputs: [x], output: x.detached()) { g in [comm.allReduced(g)] }
    }

    /// All-reduce forward, identity backward: sums the ranks' partial results (after a row-parallel matmul).
    public static func reduceFromRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        return record("reduceFromTensorParallelRegion", inputs: [x], output: comm.allReduced(x.detached())) { g in [g] }
    }

    /// Keeps this rank's block of the last dimension forward; all-gathers it backward.
    public static func scatterToRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        return record("scatterToTensorParallelRegion", inputs: [x], output: comm.localBlock(x.detached(), dim: -1)) { g in
            [comm.allGathered(g, dim: -1)]
        }
    }

    /// All-gathers the last dimension forward; keeps this rank's block of the gradient backward.
    public static func gatherFromRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        return record("gatherFromTensorParallelRegion", inputs: [x], output: comm.allGathered(x.detached(), dim: -1)) { g in
            [comm.localBlock(g, dim: -1)]
        }
    }

    /// Keeps this rank's block of the sequence forward; all-gathers the gradient backward (the embedding's
    /// hand-over into the sequence-parallel region).
    public static func scatterToSequenceParallelRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        let out = comm.localBlock(x.detached(), dim: sequenceDim)
        return record("scatterToSequenceParallelRegion", inputs: [x], output: out) { g in
            [comm.allGathered(g, dim: sequenceDim)]
        }
    }

    /// All-gathers the sequence forward; reduce-scatters the gradient backward (before a column-parallel
    /// matmul under sequence parallelism: every rank's full-sequence gradient is partial).
    public static func gatherFromSequenceParallelRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        let out = comm.allGathered(x.detached(), dim: sequenceDim)
        return record("gatherFromSequenceParallelRegion", inputs: [x], output: out) { g in
            [comm.reduceScattered(g, dim: sequenceDim)]
        }
    }

    /// Reduce-scatters along the sequence forward; all-gathers the gradient backward (after a row-parallel
    /// matmul under sequence parallelism).
    public static func reduceScatterToSequenceParallelRegion(_ x: Tensor, _ group: TensorParallelGroup) -> Tensor {
        guard let comm = multiRank(group) else { return x }
        let out = comm.reduceScattered(x.detached(), dim: sequenceDim)
        return record("reduceScatterToSequenceParallelRegion", inputs: [x], output: out) { g in
            [comm.allGathered(g, dim: sequenceDim)]
        }
    }

    /// The communicator when the group has more than one rank.
    static func multiRank(_ group: TensorParallelGroup) -> Communicator? {
        guard let comm = group.communicator, comm.size > 1 else { return nil }
        return comm
    }
}
