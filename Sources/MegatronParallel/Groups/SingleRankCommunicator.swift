import MegatronTensor

/// The group of one rank: what every parallel axis of size 1 is. Its collectives leave the tensors as a
/// group of one would (reductions change nothing, a gather copies), without a backend, on any device.
///
/// ```swift
/// let alone = SingleRankCommunicator()
/// try alone.allReduce(grads, op: .sum).wait()   // grads unchanged
/// ```
public final class SingleRankCommunicator: Communicator {
    public var rank: Int { 0 }
    public var size: Int { 1 }

    public init() {}

    public func allReduce(_ tensor: Tensor, op: ReduceOp) throws -> CollectiveWork {
        if case .scaledSum(let factor) = op, factor != 1 {
            Ops.copy(Ops.binary(tensor, Tensor(scalar: factor).to(tensor.device), .mul), into: tensor)
        }
        return CompletedWork()
    }

    public func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        try copy(input, into: output, operation: "allGather")
    }

    public func reduceScatter(_ input: Tensor, into output: Tensor, op: ReduceOp) throws -> CollectiveWork {
        _ = try copy(input, into: output, operation: "reduceScatter")
        return try allReduce(output, op: op)
    }

    public func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        try checkPeer(root, operation: "broadcast")
        return CompletedWork()
    }

    public func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork {
        throw CommunicatorError("send", "a group of one rank has no peer to send to (peer \(peer))")
    }

    public func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork {
        throw CommunicatorError("recv", "a group of one rank has no peer to receive from (peer \(peer))")
    }

    public func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        try copy(input, into: output, operation: "allToAll")
    }

    public func barrier() throws {}

    public func split(color: Int, key: Int) throws -> Communicator { SingleRankCommunicator() }

    private func copy(_ input: Tensor, into output: Tensor, operation: String) throws -> CollectiveWork {
        guard input.shape == output.shape else {
            throw CommunicatorError(operation, "on one rank the output must have the input's shape \(input.shape), "
                + "got \(output.shape)")
        }
        if input.storage !== output.storage || input.offset != output.offset { Ops.copy(input, into: output) }
        return CompletedWork()
    }

    private func checkPeer(_ peer: Int, operation: String) throws {
        guard peer == 0 else { throw CommunicatorError(operation, "rank \(peer) is not in a group of one rank") }
    }
}
