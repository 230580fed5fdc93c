// Test double until the ThreadCommunicator of branch par-comm is merged: synchronous, CPU only, fp32 values.
import Foundation
import MegatronParallel
import MegatronTensor

final class ScratchShared {
    let size: Int
    let cond = NSCondition()
    var slots: [Tensor?]
    var arrived = 0, generation = 0
    var children: [String: ScratchShared] = [:]
    init(size: Int) { self.size = size; slots = Array(repeating: nil, count: size) }

    /// Deposits `t`, waits for all, runs `body` with every rank's tensor (each rank), then waits again.
    func exchange(rank: Int, _ t: Tensor, _ body: ([Tensor]) -> Void) {
        cond.lock()
        slots[rank] = t
        arrive()
        let all = slots.map { $0! }
        cond.unlock()
        body(all)
        cond.lock()
        arrive()
        cond.unlock()
    }
    private func arrive() {
        let gen = generation
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; cond.broadcast() } else { while gen == generation { cond.wait() } }
    }
}

final class DoneWork: CollectiveWork { func wait() throws {} }

final class ScratchComm: Communicator {
    let rank: Int
    let shared: ScratchShared
    var size: Int { shared.size }
    init(rank: Int, shared: ScratchShared) { self.rank = rank; self.shared = shared }

    static func run<T>(worldSize: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        let shared = ScratchShared(size: worldSize)
        var results = [Result<T, Error>?](repeating: nil, count: worldSize)
        let lock = NSLock()
        let threads = (0..<worldSize).map { r in
            Thread {
                let out = Result { try body(ScratchComm(rank: r, shared: shared)) }
                lock.lock(); results[r] = out; lock.unlock()
            }
        }
        for t in threads { t.stackSize = 8 << 20; t.start() }
        while true { lock.lock(); let done = results.allSatisfy { $0 != nil }; lock.unlock(); if done { break }; usleep(1000) }
        return try results.map { try $0!.get() }
    }

    func allReduce(_ tensor: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork {
        var result: [Float] = []
        shared.exchange(rank: rank, tensor) { all in
            let values = all.map { $0.floats() }
            result = (0..<tensor.count).map { i in
                let column = values.map { $0[i] }
                switch op {
                case .sum: return column.reduce(0, +)
                case .average: return column.reduce(0, +) / Float(all.count)
                case .max: return column.max()!
                }
            }
        }
        // Write after everyone read (exchange's second barrier).
        Ops.copy(Tensor(shape: tensor.shape, values: result), into: tensor)
        shared.exchange(rank: rank, tensor) { _ in }
        return DoneWork()
    }
    func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork {
        var result: [Float] = []
        shared.exchange(rank: rank, input) { all in result = all.flatMap { $0.floats() } }
        Ops.copy(Tensor(shape: output.shape, values: result), into: output)
        shared.exchange(rank: rank, input) { _ in }
        return DoneWork()
    }
    func reduceScatter(_ input: Tensor, into output: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork {
        let copy = Tensor.zeros(input.shape); Ops.copy(input, into: copy)
        _ = try allReduce(copy, op: op)
        let n = output.count
        Ops.copy(copy.reshaped([-1]).narrowed(0, start: rank * n, length: n).reshaped(output.shape), into: output)
        return DoneWork()
    }
    func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork {
        var result: [Float] = []
        shared.exchange(rank: rank, tensor) { all in result = all[root].floats() }
        Ops.copy(Tensor(shape: tensor.shape, values: result), into: tensor)
        shared.exchange(rank: rank, tensor) { _ in }
        return DoneWork()
    }
    func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork { fatalError() }
    func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork { fatalError() }
    func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork { fatalError() }
    func barrier() throws { shared.exchange(rank: rank, Tensor(scalar: 0)) { _ in } }
    var splits = 0
    func split(color: Int, key: Int) throws -> Communicator {
        var members: [(Int, Int, Int)] = []
        shared.exchange(rank: rank, Tensor(shape: [2], values: [Float(color), Float(key)])) { all in
            members = all.enumerated().map { (Int($0.element.floats()[0]), Int($0.element.floats()[1]), $0.offset) }
        }
        splits += 1
        let mine = members.filter { $0.0 == color }.sorted { ($0.1, $0.2) < ($1.1, $1.2) }
        shared.cond.lock()
        let id = "\(splits)-\(color)"
        let child = shared.children[id] ?? ScratchShared(size: mine.count)
        shared.children[id] = child
        shared.cond.unlock()
        return ScratchComm(rank: mine.firstIndex { $0.2 == rank }!, shared: child)
    }
}
