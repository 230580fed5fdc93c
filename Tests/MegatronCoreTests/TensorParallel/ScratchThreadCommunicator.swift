// A stand-in for par-comm's ThreadCommunicator so these tests run before it lands; deleted when
// `runRanks` switches to `ThreadCommunicator`. Synchronous, float32 values through host arrays.
import Foundation
import MegatronParallel
import MegatronTensor

final class ScratchRendezvous {
    let size: Int
    let cond = NSCondition()
    var slots: [[Float]]
    var arrived = 0, generation = 0
    init(size: Int) { self.size = size; slots = Array(repeating: [], count: size) }
    func barrier() {
        cond.lock(); defer { cond.unlock() }
        let gen = generation
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; cond.broadcast() } else { while gen == generation { cond.wait() } }
    }
    /// Every rank's values, after all deposited; a second barrier keeps the slots until all have read.
    func exchange(rank: Int, _ values: [Float]) -> [[Float]] {
        cond.lock(); slots[rank] = values; cond.unlock()
        barrier()
        cond.lock(); let all = slots; cond.unlock()
        barrier()
        return all
    }
}

final class ScratchDone: CollectiveWork { func wait() throws {} }

final class ScratchComm: Communicator {
    let rank: Int
    let shared: ScratchRendezvous
    var size: Int { shared.size }
    init(rank: Int, shared: ScratchRendezvous) { self.rank = rank; self.shared = shared }

    static func run<T>(worldSize: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        let shared = ScratchRendezvous(size: worldSize)
        let box = ResultBox<T>(count: worldSize)
        let group = DispatchGroup()
        for r in 0..<worldSize {
            group.enter()
            let t = Thread {
                let out = Result { try body(ScratchComm(rank: r, shared: shared)) }
                box.set(r, out)
                group.leave()
            }
            t.stackSize = 16 << 20
            t.start()
        }
        group.wait()
        return try box.values()
    }

    private func reduce(_ all: [[Float]], _ op: MegatronParallel.ReduceOp) -> [Float] {
        (0..<all[0].count).map { i in
            let c = all.map { $0[i] }
            switch op {
            case .sum: return c.reduce(0, +)
            case .average: return c.reduce(0, +) / Float(c.count)
            case .max: return c.max()!
            }
        }
    }
    func allReduce(_ tensor: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork {
        let r = reduce(shared.exchange(rank: rank, tensor.floats()), op)
        Ops.copy(Tensor(shape: tensor.shape, values: r).cast(to: tensor.dtype), into: tensor)
        return ScratchDone()
    }
    func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        let all = shared.exchange(rank: rank, input.floats())
        Ops.copy(Tensor(shape: output.shape, values: all.flatMap { $0 }).cast(to: output.dtype), into: output)
        return ScratchDone()
    }
    func reduceScatter(_ input: Tensor, into output: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork {
        let r = reduce(shared.exchange(rank: rank, input.floats()), op)
        let n = output.count
        Ops.copy(Tensor(shape: output.shape, values: Array(r[(rank * n)..<((rank + 1) * n)])).cast(to: output.dtype), into: output)
        return ScratchDone()
    }
    func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        let all = shared.exchange(rank: rank, tensor.floats())
        Ops.copy(Tensor(shape: tensor.shape, values: all[root]).cast(to: tensor.dtype), into: tensor)
        return ScratchDone()
    }
    func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork { fatalError() }
    func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork { fatalError() }
    func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork { fatalError() }
    func barrier() throws { shared.barrier() }
    func split(color: Int, key: Int) throws -> Communicator { fatalError() }
}

func runRanks<T>(_ size: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
    try ScratchComm.run(worldSize: size, body)
}

final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<T, Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); results[i] = r; lock.unlock() }
    func values() throws -> [T] { lock.lock(); defer { lock.unlock() }; return try results.map { try $0!.get() } }
}
