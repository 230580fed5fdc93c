import Foundation
import MegatronParallel
import MegatronTensor
import XCTest

/// NCCL collectives on every GPU of this machine (at least 2), one thread per GPU in this process, against
/// hand-computed results. Skipped without 2 GPUs or without libnccl.so.2.
final class NCCLCommunicatorTests: XCTestCase {
    /// The GPUs of this machine; skips the test below 2 GPUs or without NCCL.
    private func gpuOrdinals() throws -> [Int] {
        let ordinals = (0..<8).filter { CUDAContext.isAvailable(ordinal: $0) }
        guard ordinals.count >= 2 else { throw XCTSkip("NCCL tests need at least 2 GPUs, found \(ordinals.count)") }
        do {
            _ = try NCCLUniqueID.make()
        } catch let error as CommunicatorError where error.operation == "loading NCCL" {
            throw XCTSkip("\(error)")
        }
        return ordinals
    }

    private func communicators() throws -> [NCCLCommunicator] {
        try NCCLCommunicator.makeAll(ordinals: gpuOrdinals())
    }

    /// Runs `body` for every rank, each on its own thread (NCCL blocks a thread driving one GPU of a
    /// collective until the others join), and returns the results in rank order.
    private func onEveryRank<Rank, T>(_ comms: [Rank], _ body: @escaping (Rank) throws -> T) throws -> [T] {
        let results = ResultBox<T>(count: comms.count)
        let done = DispatchGroup()
        for (index, comm) in comms.enumerated() {
            done.enter()
            Thread {
                results.set(index, Result { try body(comm) })
                done.leave()
            }.start()
        }
        guard done.wait(timeout: .now() + 120) == .success else {
            // The stuck threads still hold the ranks' slots: report, and leave them to the process's end.
            throw CommunicatorError("NCCL test ranks", "not finished in 120 s (finished: \(results.finished()))")
        }
        return try results.values()
    }

    func testCollectivesMatchHandComputedResults() throws {
        let comms = try communicators()
        let n = comms.count
        let results = try onEveryRank(comms) { comm -> [String: [Float]] in
            let device = comm.device, r = Float(comm.rank)
            var seen: [String: [Float]] = [:]
            for op in [ReduceOp.sum, .average, .max] {
                let x = Tensor(shape: [2], values: [r + 1, 10 * (r + 1)]).to(device)
                try comm.allReduce(x, op: op).wait()
                seen["allReduce \(op)"] = x.floats()
            }
            let scaled = Tensor(shape: [2], values: [r + 1, -8]).to(device)
            try comm.allReduce(scaled, op: .scaledSum(0.5)).wait()
            seen["allReduce scaled"] = scaled.floats()
            let scaledShard = Tensor.zeros([1], dtype: .bfloat16, device: device)
            try comm.reduceScatter(Tensor(shape: [n], values: (0..<n).map { Float($0) + r }, dtype: .bfloat16).to(device),
                                   into: scaledShard, op: .scaledSum(0.25)).wait()
            seen["reduceScatter scaled bf16"] = scaledShard.floats()
            let bf16 = Tensor(shape: [2], values: [r + 1, 0.5], dtype: .bfloat16).to(device)
            try comm.allReduce(bf16, op: .sum).wait()
            seen["allReduce bf16"] = bf16.floats()

            let gathered = Tensor.zeros([n, 2], device: device)
            try comm.allGather(Tensor(shape: [1, 2], values: [r, r + 0.5]).to(device), into: gathered).wait()
            seen["allGather"] = gathered.floats()

            let scattered = Tensor.zeros([2], device: device)
            let scatterInput = Tensor(shape: [2 * n], values: (0..<(2 * n)).map { r + Float($0) }).to(device)
            try comm.reduceScatter(scatterInput, into: scattered, op: .sum).wait()
            seen["reduceScatter"] = scattered.floats()

            let broadcast = Tensor(shape: [3], values: [r, 7, 2 * r]).to(device)
            try comm.broadcast(broadcast, root: n - 1).wait()
            seen["broadcast"] = broadcast.floats()

            let exchanged = Tensor.zeros([n], device: device)
            try comm.allToAll(Tensor(shape: [n], values: (0..<n).map { 10 * r + Float($0) }).to(device),
                              into: exchanged).wait()
            seen["allToAll"] = exchanged.floats()
            // Uneven blocks: rank r sends rank j (r + j) % 2 rows holding 10r + j; empty blocks are skipped.
            let splits = (0..<n).map { (comm.rank + $0) % 2 }
            let uneven = Tensor.zeros([splits.reduce(0, +)], device: device)
            try comm.allToAll(Tensor(shape: [splits.reduce(0, +)], values: (0..<n).filter { splits[$0] > 0 }.map { 10 * r + Float($0) }).to(device),
                              inputSplits: splits, into: uneven, outputSplits: splits).wait()
            seen["allToAllV"] = uneven.floats()

            let received = Tensor.zeros([2], device: device)
            let next = (comm.rank + 1) % n, previous = (comm.rank + n - 1) % n
            // Even ranks send first, odd ranks receive first: blocking point-to-point pairs must not all send.
            let message = Tensor(shape: [2], values: [r, 42]).to(device)
            if comm.rank % 2 == 0 {
                try comm.send(message, to: next).wait()
                try comm.recv(into: received, from: previous).wait()
            } else {
                try comm.recv(into: received, from: previous).wait()
                try comm.send(message, to: next).wait()
            }
            seen["ring"] = received.floats()

            // Both directions of the ring in one batch, every rank listing its sends first.
            let fromPrevious = Tensor.zeros([2], device: device), fromNext = Tensor.zeros([2], device: device)
            try comm.batchSendRecv([.send(Tensor(shape: [2], values: [r, 1]).to(device), to: next),
                                    .send(Tensor(shape: [2], values: [r, -1]).to(device), to: previous),
                                    .recv(into: fromPrevious, from: previous), .recv(into: fromNext, from: next)]).wait()
            seen["batch"] = fromPrevious.floats() + fromNext.floats()

            let half = try comm.split(color: comm.rank % 2, key: -comm.rank)
            let y = Tensor(shape: [1], values: [r]).to(device)
            try half.allReduce(y, op: .sum).wait()
            seen["split"] = [Float(half.rank), Float(half.size), y.floats()[0]]
            try comm.barrier()
            return seen
        }
        let triangle = Float(n * (n + 1) / 2)
        for (rank, seen) in results.enumerated() {
            let r = Float(rank)
            XCTAssertEqual(seen["allReduce sum"], [triangle, 10 * triangle])
            XCTAssertEqual(seen["allReduce avg"], [triangle / Float(n), 10 * triangle / Float(n)])
            XCTAssertEqual(seen["allReduce max"], [Float(n), Float(10 * n)])
            XCTAssertEqual(seen["allReduce bf16"], [triangle, 0.5 * Float(n)])
            XCTAssertEqual(seen["allReduce scaled"], [0.5 * triangle, -4 * Float(n)])
            // Rank j's element `rank` is rank + j: the scaled sum over j is 0.25 (n · rank + n(n-1)/2).
            XCTAssertEqual(seen["reduceScatter scaled bf16"], [0.25 * Float(n * rank + n * (n - 1) / 2)])
            XCTAssertEqual(seen["allGather"], (0..<n).flatMap { [Float($0), Float($0) + 0.5] })
            let base = Float(n * (n - 1) / 2)
            XCTAssertEqual(seen["reduceScatter"], [base + Float(n * 2 * rank), base + Float(n * (2 * rank + 1))])
            XCTAssertEqual(seen["broadcast"], [Float(n - 1), 7, Float(2 * (n - 1))])
            XCTAssertEqual(seen["allToAll"], (0..<n).map { Float(10 * $0 + rank) })
            XCTAssertEqual(seen["allToAllV"], (0..<n).filter { ($0 + rank) % 2 == 1 }.map { Float(10 * $0 + rank) })
            XCTAssertEqual(seen["ring"], [Float((rank + n - 1) % n), 42])
            XCTAssertEqual(seen["batch"], [Float((rank + n - 1) % n), 1, Float((rank + 1) % n), -1])
            let sameParity = (0..<n).filter { $0 % 2 == rank % 2 }
            let position = Array(sameParity.reversed()).firstIndex(of: rank)!
            XCTAssertEqual(seen["split"], [Float(position), Float(sameParity.count), Float(sameParity.reduce(0, +))],
                           "rank \(r)")
        }
    }

    /// Where NCCL is not installed, the error names the library and how to install it.
    func testMissingLibraryIsNamed() throws {
        do {
            _ = try NCCLUniqueID.make()
            throw XCTSkip("libnccl.so.2 is installed here")
        } catch let error as CommunicatorError where error.operation == "loading NCCL" {
            XCTAssertTrue("\(error)".contains("cannot load libnccl.so.2"), "\(error)")
            XCTAssertTrue("\(error)".contains("pip install nvidia-nccl-cu12"), "\(error)")
        } catch let error as CommunicatorError {
            throw XCTSkip("NCCL loads but cannot make an id here (no GPU): \(error)")
        }
    }

    /// The multi-process path in one process: each GPU's thread joins through the rendezvous store (rank 0
    /// serves it on a free port and publishes the NCCL id) and ncclCommInitRank, then all-reduces.
    func testWorldFromEnvironmentThroughTheRendezvousStore() throws {
        let ordinals = try gpuOrdinals()
        // A port just released by a server is almost surely free.
        let port = try RendezvousStore(host: "127.0.0.1", port: 0, isServer: true).port
        let n = ordinals.count
        let sums = try onEveryRank(ordinals) { ordinal -> [Float] in
            let env = DistributedEnvironment(rank: ordinal, worldSize: n, localRank: ordinal,
                                             masterAddress: "127.0.0.1", masterPort: port)
            let world = try NCCLCommunicator.world(environment: env, timeout: 60)
            let x = Tensor(shape: [1], values: [Float(world.rank + 1)]).to(world.device)
            try world.allReduce(x, op: .sum).wait()
            return x.floats()
        }
        for sum in sums { XCTAssertEqual(sum, [Float(n * (n + 1) / 2)]) }
    }

    func testCPUTensorsAreRejected() throws {
        let comms = try communicators()
        XCTAssertThrowsError(try comms[0].allReduce(Tensor.zeros([2]), op: .sum)) { error in
            XCTAssertTrue("\(error)".contains("tensor on cpu, communicator on cuda"), "\(error)")
        }
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<T, Error>) { lock.withLock { slots[index] = result } }
    func values() throws -> [T] { try lock.withLock { try slots.map { try $0!.get() } } }
    func finished() -> [Int] { lock.withLock { slots.indices.filter { slots[$0] != nil } } }
}
