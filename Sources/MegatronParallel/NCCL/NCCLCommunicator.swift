import CCUDA
import Foundation
import MegatronCUDA
import MegatronTensor

/// A `Communicator` over NCCL for CUDA tensors: one rank per GPU.
///
/// Each operation runs on this communicator's own stream, after the work already enqueued on the device's
/// compute stream (`CUDAContext.stream`); its work handle's `wait()` makes the compute stream wait for it
/// (no host wait), so compute enqueued after `wait()` sees the result. The handle keeps the tensors alive.
///
/// With a `CollectiveWatchdog`, every operation is watched until it completes, and the communicator (with
/// those split from it) is aborted when one does not complete within the timeout or NCCL reports a failure.
///
/// ```swift
/// // one process per GPU (see `megatron launch`); rank 0 makes the id, the rendezvous store shares it
/// let comm = try NCCLCommunicator(id: id, rank: env.rank, size: env.worldSize, device: .cuda(env.localRank))
/// try comm.allReduce(grads, op: .average).wait()
/// ```
public final class NCCLCommunicator: Communicator, AbortableCommunicator {
    public let rank: Int
    public let size: Int
    public let device: Device
    private let nccl: CCUDANCCL
    private let comm: ncclComm_t
    private let context: CUDAContext
    private let stream: CUDAStream
    /// Watches this communicator's operations (and those of the groups split from it); nil: none.
    public let watchdog: CollectiveWatchdog?

    /// Joins the communicator `id` as `rank` of `size` ranks on `device`; blocks until every rank has joined
    /// (held to `watchdog`'s timeout when one is given).
    public convenience init(id: NCCLUniqueID, rank: Int, size: Int, device: Device, watchdog: CollectiveWatchdog? = nil) throws {
        guard (0..<size).contains(rank) else {
            throw CommunicatorError("ncclCommInitRank", "rank \(rank) is outside a world of \(size) ranks")
        }
        let nccl = try NCCLLibrary.load()
        let context = try NCCLCommunicator.context(of: device)
        try context.device.makeCurrent()
        var comm: ncclComm_t?
        let operation = "ncclCommInitRank(rank \(rank) of \(size) on \(device))"
        let status = watchdog.map { $0.withDeadline(operation) { nccl.ncclCommInitRank(&comm, Int32(size), id.raw, Int32(rank)) } }
            ?? nccl.ncclCommInitRank(&comm, Int32(size), id.raw, Int32(rank))
        try NCCLLibrary.check(status, operation)
        try self.init(nccl: nccl, comm: comm!, rank: rank, size: size, context: context, watchdog: watchdog)
    }

    /// One communicator per listed GPU of this process (ncclCommInitAll); rank i drives `ordinals[i]`.
    /// Drive each from its own thread: NCCL collectives on several GPUs from one thread would deadlock.
    public static func makeAll(ordinals: [Int]) throws -> [NCCLCommunicator] {
        let nccl = try NCCLLibrary.load()
        let contexts = try ordinals.map { try context(of: .cuda($0)) }
        var comms = [ncclComm_t?](repeating: nil, count: ordinals.count)
        try NCCLLibrary.check(nccl.ncclCommInitAll(&comms, Int32(ordinals.count), ordinals.map(Int32.init)),
                              "ncclCommInitAll(\(ordinals))")
        return try ordinals.indices.map {
            try NCCLCommunicator(nccl: nccl, comm: comms[$0]!, rank: $0, size: ordinals.count, context: contexts[$0],
                                 watchdog: nil)
        }
    }

    private init(nccl: CCUDANCCL, comm: ncclComm_t, rank: Int, size: Int, context: CUDAContext,
                 watchdog: CollectiveWatchdog?) throws {
        self.nccl = nccl
        self.comm = comm
        self.rank = rank
        self.size = size
        self.context = context
        self.watchdog = watchdog
        device = .cuda(context.device.ordinal)
        stream = try CUDAStream(device: context.device)
        watchdog?.watch(self)
    }

    deinit { _ = nccl.ncclCommDestroy(comm) }

    /// Aborts every operation in flight on this communicator (after a peer failed); it is unusable afterwards.
    public func abort() { _ = nccl.ncclCommAbort(comm) }

    /// NCCL's asynchronous error (a peer that died, a network failure), if it has one.
    public func asyncFailure() -> String? {
        var status: ncclResult_t = 0
        _ = nccl.ncclCommGetAsyncError(comm, &status)
        // 7 is ncclInProgress: a non-blocking operation still running, not a failure.
        guard status != 0, status != 7 else { return nil }
        return "NCCL communicator (rank \(rank) of \(size)) failed: \(String(cString: nccl.ncclGetErrorString(status)))"
    }

    private static func context(of device: Device) throws -> CUDAContext {
        guard case .cuda(let ordinal) = device else {
            throw CommunicatorError("NCCLCommunicator", "needs a CUDA device, got \(device)")
        }
        return try CUDAContext.shared(ordinal: ordinal)
    }

    // MARK: Collectives

    public func allReduce(_ tensor: Tensor, op: ReduceOp) throws -> CollectiveWork {
        try checkReduction(op, tensor.dtype, "allReduce")
        return try enqueue("allReduce(\(op))", [tensor]) { stream in
            withReduction(op, tensor.dtype) { reduction in
                nccl.ncclAllReduce(address(tensor), address(tensor), tensor.count, NCCLLibrary.dataType(tensor.dtype),
                                   reduction, comm, stream)
            }
        }
    }

    public func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        try checkBlocks(large: output, small: input, "allGather")
        return try enqueue("allGather", [input, output]) { stream in
            nccl.ncclAllGather(address(input), address(output), input.count, NCCLLibrary.dataType(input.dtype),
                               comm, stream)
        }
    }

    public func reduceScatter(_ input: Tensor, into output: Tensor, op: ReduceOp) throws -> CollectiveWork {
        try checkBlocks(large: input, small: output, "reduceScatter")
        try checkReduction(op, output.dtype, "reduceScatter")
        return try enqueue("reduceScatter(\(op))", [input, output]) { stream in
            withReduction(op, output.dtype) { reduction in
                nccl.ncclReduceScatter(address(input), address(output), output.count, NCCLLibrary.dataType(output.dtype),
                                       reduction, comm, stream)
            }
        }
    }

    public func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        try checkPeer(root, "broadcast")
        return try enqueue("broadcast(root: \(root))", [tensor]) { stream in
            nccl.ncclBroadcast(address(tensor), address(tensor), tensor.count, NCCLLibrary.dataType(tensor.dtype),
                               Int32(root), comm, stream)
        }
    }

    public func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork {
        try checkPeer(peer, "send")
        return try enqueue("send(to: \(peer))", [tensor]) { stream in
            nccl.ncclSend(address(tensor), tensor.count, NCCLLibrary.dataType(tensor.dtype), Int32(peer), comm, stream)
        }
    }

    public func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork {
        try checkPeer(peer, "recv")
        return try enqueue("recv(from: \(peer))", [tensor]) { stream in
            nccl.ncclRecv(address(tensor), tensor.count, NCCLLibrary.dataType(tensor.dtype), Int32(peer), comm, stream)
        }
    }

    /// One NCCL group of the batch's sends and receives, so neighbours exchanging both ways make progress.
    public func batchSendRecv(_ transfers: [PointToPoint]) throws -> CollectiveWork {
        let tensors = transfers.map { transfer -> Tensor in
            switch transfer { case .send(let t, _), .recv(let t, _): t }
        }
        for case .send(_, let peer) in transfers { try checkPeer(peer, "batchSendRecv") }
        for case .recv(_, let peer) in transfers { try checkPeer(peer, "batchSendRecv") }
        return try enqueue("batchSendRecv(\(transfers.count) transfers)", tensors) { stream in
            var status = nccl.ncclGroupStart()
            for transfer in transfers where status == 0 {
                switch transfer {
                case .send(let t, let peer):
                    status = nccl.ncclSend(address(t), t.count, NCCLLibrary.dataType(t.dtype), Int32(peer), comm, stream)
                case .recv(let t, let peer):
                    status = nccl.ncclRecv(address(t), t.count, NCCLLibrary.dataType(t.dtype), Int32(peer), comm, stream)
                }
            }
            let end = nccl.ncclGroupEnd()
            return status != 0 ? status : end
        }
    }

    /// NCCL has no all-to-all: one grouped send and receive per peer.
    public func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        guard input.shape == output.shape, input.dtype == output.dtype, input.count % size == 0 else {
            throw CommunicatorError("allToAll", "input \(input.shape) \(input.dtype) and output \(output.shape) "
                + "\(output.dtype) must match and split into \(size) equal blocks")
        }
        let block = input.count / size, blockBytes = block * input.dtype.byteSize
        let type = NCCLLibrary.dataType(input.dtype)
        return try enqueue("allToAll", [input, output]) { stream in
            var status = nccl.ncclGroupStart()
            for peer in 0..<size where status == 0 {
                status = nccl.ncclSend(address(input) + peer * blockBytes, block, type, Int32(peer), comm, stream)
                if status == 0 {
                    status = nccl.ncclRecv(address(output) + peer * blockBytes, block, type, Int32(peer), comm, stream)
                }
            }
            let end = nccl.ncclGroupEnd()
            return status != 0 ? status : end
        }
    }

    /// An all-reduce of one element, waited for on the host.
    public func barrier() throws {
        let token = Tensor(zeros: [1], dtype: .float32, device: device)
        try allReduce(token, op: .sum).wait()
        try context.stream.synchronize()
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        try context.device.makeCurrent()
        var child: ncclComm_t?
        try NCCLLibrary.check(nccl.ncclCommSplit(comm, Int32(color), Int32(key), &child, nil),
                              "ncclCommSplit(color: \(color), key: \(key))")
        guard let child else {
            throw CommunicatorError("ncclCommSplit(color: \(color), key: \(key))",
                                    "NCCL made no communicator (a negative color means no group)")
        }
        var childRank: Int32 = 0, childSize: Int32 = 0
        // NCCL orders the new group by (key, parent rank), as the protocol specifies, and knows the result.
        try NCCLLibrary.check(nccl.ncclCommUserRank(child, &childRank), "ncclCommUserRank")
        try NCCLLibrary.check(nccl.ncclCommCount(child, &childSize), "ncclCommCount")
        return try NCCLCommunicator(nccl: nccl, comm: child, rank: Int(childRank), size: Int(childSize),
                                    context: context, watchdog: watchdog)
    }

    // MARK: Enqueueing

    /// Orders this communicator's stream after the compute stream, enqueues `body` on it, and returns a work
    /// handle holding an event recorded after it.
    private func enqueue(_ operation: String, _ tensors: [Tensor],
                         _ body: (CUstream) -> ncclResult_t) throws -> CollectiveWork {
        for tensor in tensors { try checkTensor(tensor, operation) }
        try context.device.makeCurrent()
        let inputsReady = try CUDAEvent(device: context.device, timing: false)
        try inputsReady.record(on: context.stream)
        try stream.wait(for: inputsReady)
        try NCCLLibrary.check(body(stream.handle), "\(operation) on rank \(rank) of \(size)")
        let done = try CUDAEvent(device: context.device, timing: false)
        try done.record(on: stream)
        watchdog?.track("NCCL \(operation) on rank \(rank) of \(size)") { try done.isComplete() }
        return NCCLWork(operation: operation, done: done, computeStream: context.stream, tensors: tensors,
                        // Holds the communicator: it must outlive the operation it runs.
                        asyncError: { [self] in
                            var status: ncclResult_t = 0
                            _ = nccl.ncclCommGetAsyncError(comm, &status)
                            return status
                        })
    }

    /// Runs `body` with NCCL's operator for `op`. A `scaledSum` gets a PreMulSum operator made for this call
    /// (its factor in `dtype`, read from the host now) and destroyed once `body` has enqueued the operation,
    /// which NCCL allows.
    private func withReduction(_ op: ReduceOp, _ dtype: DType, _ body: (Int32) -> ncclResult_t) -> ncclResult_t {
        guard case .scaledSum(let factor) = op else { return body(NCCLLibrary.reduction(op)) }
        var created: Int32 = 0
        func create<Scalar>(_ scalar: Scalar) -> ncclResult_t {
            var scalar = scalar
            return nccl.ncclRedOpCreatePreMulSum(&created, &scalar, NCCLLibrary.dataType(dtype), Int32(CNCCL_SCALAR_HOST_IMMEDIATE), comm)
        }
        let status = switch dtype {
        case .float32: create(factor)
        case .bfloat16: create(FloatFormats.bfloat16Bits(factor))
        case .float16: create(FloatFormats.float16Bits(factor))
        default: preconditionFailure("checkReduction admits no \(op) of \(dtype)")
        }
        guard status == 0 else { return status }
        let result = body(created)
        let destroyed = nccl.ncclRedOpDestroy(created, comm)
        return result != 0 ? result : destroyed
    }

    private func address(_ tensor: Tensor) -> UnsafeMutableRawPointer {
        tensor.storage.pointer + tensor.offset * tensor.dtype.byteSize
    }

    private func checkTensor(_ tensor: Tensor, _ operation: String) throws {
        guard tensor.device == device else {
            throw CommunicatorError(operation, "tensor on \(tensor.device), communicator on \(device)")
        }
        guard tensor.isContiguous else {
            throw CommunicatorError(operation, "tensor of shape \(tensor.shape) with strides \(tensor.strides) "
                + "is not contiguous")
        }
    }

    private func checkBlocks(large: Tensor, small: Tensor, _ operation: String) throws {
        guard large.dtype == small.dtype, large.count == small.count * size else {
            throw CommunicatorError(operation, "expected \(size) × \(small.count) \(small.dtype) elements, got "
                + "\(large.shape) \(large.dtype)")
        }
    }

    private func checkReduction(_ op: ReduceOp, _ dtype: DType, _ operation: String) throws {
        guard case .scaledSum = op, ![.float32, .bfloat16, .float16].contains(dtype) else { return }
        throw CommunicatorError(operation, "\(op) needs a float32, bfloat16 or float16 tensor, got \(dtype)")
    }

    private func checkPeer(_ peer: Int, _ operation: String) throws {
        guard (0..<size).contains(peer) else {
            throw CommunicatorError(operation, "rank \(peer) is outside the group of \(size) ranks")
        }
    }
}

/// An NCCL operation in flight: `wait()` orders the compute stream after it and reports an asynchronous
/// NCCL failure (a peer that died, a network error).
final class NCCLWork: CollectiveWork {
    let operation: String
    let done: CUDAEvent
    let computeStream: CUDAStream
    /// Kept alive until the operation is waited for: their memory must not return to the allocator earlier.
    private var tensors: [Tensor]
    private let asyncError: () -> ncclResult_t

    init(operation: String, done: CUDAEvent, computeStream: CUDAStream, tensors: [Tensor],
         asyncError: @escaping () -> ncclResult_t) {
        self.operation = operation
        self.done = done
        self.computeStream = computeStream
        self.tensors = tensors
        self.asyncError = asyncError
    }

    func wait() throws {
        try computeStream.wait(for: done)
        try NCCLLibrary.check(asyncError(), operation)
        tensors = []
    }
}
