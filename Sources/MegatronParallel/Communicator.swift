import MegatronTensor

/// How a collective combines the ranks' values.
public enum ReduceOp: Sendable, Equatable, CustomStringConvertible {
    case sum, average, max
    /// Every rank's values multiplied by the factor, then summed (NCCL's PreMulSum): a data-parallel
    /// gradient average as Megatron takes it (grads scaled by 1/dp, then summed) without a pass of its own.
    /// Floating-point tensors only.
    case scaledSum(Float)

    public var description: String {
        switch self {
        case .sum: "sum"
        case .average: "avg"
        case .max: "max"
        case .scaledSum(let factor): "premul_sum(\(factor))"
        }
    }
}

/// A collective or point-to-point operation in flight. `wait()` returns once its result may be read
/// (on the GPU: once the caller's stream is ordered after it); it rethrows the operation's failure.
public protocol CollectiveWork: AnyObject {
    func wait() throws
}

/// A group of ranks that run collectives together (a `torch.distributed` process group).
///
/// Every rank of the group calls the same collectives in the same order with tensors of the same shape
/// and dtype, all on the same kind of device. Tensors are contiguous. Results are written in place
/// (`allReduce`, `broadcast`, `recv`) or into a given output tensor, never allocated by the backend.
///
/// Backends: `ThreadCommunicator` (ranks are threads of one process; CPU tensors) and `NCCLCommunicator`
/// (one process per GPU; CUDA tensors).
///
/// ```swift
/// let work = try group.allReduce(grads, op: .sum)   // starts the reduction
/// try work.wait()                                    // grads now holds the sum over the group
/// ```
public protocol Communicator: AnyObject {
    /// This rank's index in the group, 0..<size.
    var rank: Int { get }
    /// Number of ranks in the group.
    var size: Int { get }

    /// Reduces `tensor` over the group, in place on every rank.
    func allReduce(_ tensor: Tensor, op: ReduceOp) throws -> CollectiveWork
    /// Concatenates every rank's `input` along dimension 0 into `output` (`size` times as many rows), in rank order.
    /// `input` may be this rank's block of `output` (in place).
    func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork
    /// Reduces `input` over the group and leaves rank r the r-th of `size` equal row blocks of it in `output`.
    func reduceScatter(_ input: Tensor, into output: Tensor, op: ReduceOp) throws -> CollectiveWork
    /// Copies `root`'s `tensor` into every rank's `tensor`.
    func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork
    /// Sends `tensor` to group rank `peer`, which must call `recv` with a tensor of the same shape.
    func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork
    /// Receives into `tensor` what group rank `peer` sends.
    func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork
    /// Issues the sends and receives together (`torch.distributed.batch_isend_irecv`): neighbours that each send
    /// to and receive from one another in one batch cannot deadlock, whatever order they list them in.
    func batchSendRecv(_ transfers: [PointToPoint]) throws -> CollectiveWork
    /// Rank r's j-th row block of `input` (of `size` equal blocks) becomes rank j's r-th row block of `output`.
    func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork
    /// All-to-all with uneven row blocks (`torch.distributed.all_to_all_single` with split sizes): this rank's
    /// rows `inputSplits[j]` (the j-th run of `input`'s rows) go to rank j, and `output`'s j-th run of
    /// `outputSplits[j]` rows comes from rank j. Rank j's `inputSplits[r]` must equal rank r's `outputSplits[j]`.
    /// The default issues one `batchSendRecv`.
    func allToAll(_ input: Tensor, inputSplits: [Int], into output: Tensor, outputSplits: [Int]) throws -> CollectiveWork
    /// Returns once every rank of the group has called it.
    func barrier() throws

    /// Splits the group as `MPI_Comm_split` / `ncclCommSplit`: every rank calls it; ranks passing the same
    /// `color` form one new group, ordered by `key` (then by their rank here).
    func split(color: Int, key: Int) throws -> Communicator
}

/// One transfer of a `batchSendRecv` batch; peers are ranks of the group.
public enum PointToPoint {
    case send(Tensor, to: Int)
    case recv(into: Tensor, from: Int)
}

extension Communicator {
    /// Sends first, then receives: right for backends whose sends never wait for the receiver (thread ranks
    /// post to mailboxes). NCCL groups the batch instead.
    public func batchSendRecv(_ transfers: [PointToPoint]) throws -> CollectiveWork {
        var works: [CollectiveWork] = []
        for case .send(let tensor, let peer) in transfers { works.append(try send(tensor, to: peer)) }
        for case .recv(let tensor, let peer) in transfers { works.append(try recv(into: tensor, from: peer)) }
        return CollectiveWorks(works)
    }
}

/// Several operations waited for as one.
final class CollectiveWorks: CollectiveWork {
    let works: [CollectiveWork]
    init(_ works: [CollectiveWork]) { self.works = works }
    func wait() throws { for work in works { try work.wait() } }
}

extension CollectiveWork {
    /// Waits and discards: for callers that need the result before going on.
    public func complete() throws { try wait() }
}

/// A collective that failed or could not start: names the operation, the group and the cause.
public struct CommunicatorError: Error, CustomStringConvertible {
    public var operation: String
    public var message: String

    public init(_ operation: String, _ message: String) {
        self.operation = operation
        self.message = message
    }

    public var description: String { "\(operation) failed: \(message)" }
}
