import MegatronParallel
import MegatronTensor
import XCTest

/// Every collective of the thread backend against hand-computed results on 1, 2 and 4 ranks.
final class ThreadCommunicatorTests: XCTestCase {
    func testReduceOpNamesMatchTorchDistributed() {
        XCTAssertEqual([ReduceOp.sum, .average, .max, .scaledSum(0.25)].map(\.description),
                       ["sum", "avg", "max", "premul_sum(0.25)"])
    }

    /// scaledSum multiplies each rank's values before adding them (NCCL's PreMulSum): 0.25 · (1 + 2 + 3 + 4)
    /// on 4 ranks in fp32 and bf16; integers are refused with the op named.
    func testScaledSumScalesEachRankThenSums() throws {
        for dtype in [DType.float32, .bfloat16] {
            let results = try ThreadCommunicator.run(worldSize: 4, timeout: 20) { comm -> [Float] in
                let x = Tensor(shape: [2], values: [Float(comm.rank + 1), -8], dtype: dtype)
                try comm.allReduce(x, op: .scaledSum(0.25)).wait()
                return x.floats()
            }
            for value in results { XCTAssertEqual(value, [2.5, -8], "\(dtype)") }
        }
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 2, timeout: 20) { comm in
            try comm.allReduce(Tensor(shape: [1], ints: [1], dtype: .int32), op: .scaledSum(0.5)).wait()
        }) { XCTAssertTrue("\($0)".contains("needs a floating-point tensor"), "\($0)") }
    }

    /// Rank r holds [r+1, 10(r+1)]: the sum over n ranks is [n(n+1)/2, 10 n(n+1)/2], the max [n, 10n].
    func testAllReduceSumAverageMax() throws {
        for n in [1, 2, 4] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [[Float]] in
                let r = Float(comm.rank + 1)
                return try [ReduceOp.sum, .average, .max].map { op in
                    let x = Tensor(shape: [2], values: [r, 10 * r])
                    try comm.allReduce(x, op: op).wait()
                    return x.floats()
                }
            }
            let triangle = Float(n * (n + 1) / 2)
            for perRank in results {
                XCTAssertEqual(perRank[0], [triangle, 10 * triangle], "sum on \(n) ranks")
                XCTAssertEqual(perRank[1], [triangle / Float(n), 10 * triangle / Float(n)], "average on \(n) ranks")
                XCTAssertEqual(perRank[2], [Float(n), Float(10 * n)], "max on \(n) ranks")
            }
        }
    }

    /// 16-bit types reduce in fp32 and round once: 1 + 3 · (2^-8 · 4/3) = 1 + 2^-6 is exact in bf16 and fp16,
    /// whereas adding in bf16 step by step would round 1 + 2^-8·4/3 back to 1 every time.
    func testSixteenBitAllReduceAccumulatesInFloat32() throws {
        let step = Float(1) / 192
        for dtype in [DType.bfloat16, .float16] {
            let results = try ThreadCommunicator.run(worldSize: 4, timeout: 20) { comm -> [Float] in
                let x = Tensor(shape: [1], values: [comm.rank == 0 ? 1 : step], dtype: dtype)
                try comm.allReduce(x, op: .sum).wait()
                return x.floats()
            }
            let stored = Tensor(shape: [1], values: [step], dtype: dtype).floats()[0]
            let expected = Tensor(shape: [1], values: [1 + 3 * stored], dtype: dtype).floats()
            for value in results { XCTAssertEqual(value, expected, "\(dtype)") }
            if dtype == .bfloat16 { XCTAssertGreaterThan(expected[0], 1, "the test must tell fp32 from bf16 accumulation") }
        }
    }

    func testIntegerAllReduce() throws {
        for dtype in [DType.int32, .int64] {
            let results = try ThreadCommunicator.run(worldSize: 4, timeout: 20) { comm -> [[Int]] in
                let sum = Tensor(shape: [2], ints: [comm.rank, -3], dtype: dtype)
                try comm.allReduce(sum, op: .sum).wait()
                let average = Tensor(shape: [1], ints: [comm.rank], dtype: dtype)
                try comm.allReduce(average, op: .average).wait()
                return [sum.ints(), average.ints()]
            }
            for value in results { XCTAssertEqual(value, [[6, -12], [1]], "\(dtype): 6/4 truncates to 1") }
        }
    }

    func testAllGatherConcatenatesRowsInRankOrder() throws {
        for n in [1, 2, 4] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
                let r = Float(comm.rank)
                let input = Tensor(shape: [1, 2], values: [r, r + 0.5])
                let output = Tensor.zeros([n, 2])
                try comm.allGather(input, into: output).wait()
                return output.floats()
            }
            let expected = (0..<n).flatMap { [Float($0), Float($0) + 0.5] }
            for value in results { XCTAssertEqual(value, expected) }
        }
    }

    /// Input on rank r is r + [0, 1, ..., 2n-1]; the sum is n(n-1)/2 + n·i at element i, and rank r keeps
    /// elements 2r and 2r+1 of it.
    func testReduceScatterKeepsThisRanksBlockOfTheSum() throws {
        for n in [1, 2, 4] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
                let input = Tensor(shape: [2 * n, 1], values: (0..<(2 * n)).map { Float(comm.rank + $0) })
                let output = Tensor.zeros([2, 1])
                try comm.reduceScatter(input, into: output, op: .sum).wait()
                return output.floats()
            }
            let base = Float(n * (n - 1) / 2)
            for (r, value) in results.enumerated() {
                XCTAssertEqual(value, [base + Float(n * 2 * r), base + Float(n * (2 * r + 1))], "rank \(r) of \(n)")
            }
        }
    }

    func testBroadcastCopiesTheRootsTensor() throws {
        for n in [1, 2, 4] {
            let root = n - 1
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Int] in
                let x = Tensor(shape: [3], ints: [comm.rank, 7, comm.rank * 2])
                try comm.broadcast(x, root: root).wait()
                return x.ints()
            }
            for value in results { XCTAssertEqual(value, [root, 7, root * 2]) }
        }
    }

    /// Rank r sends its block j = [10r + j] to rank j; rank j's output is [j, 10 + j, 20 + j, ...].
    func testAllToAllTransposesBlocks() throws {
        for n in [1, 2, 4] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
                let input = Tensor(shape: [n], values: (0..<n).map { Float(10 * comm.rank + $0) })
                let output = Tensor.zeros([n])
                try comm.allToAll(input, into: output).wait()
                return output.floats()
            }
            for (j, value) in results.enumerated() {
                XCTAssertEqual(value, (0..<n).map { Float(10 * $0 + j) }, "rank \(j) of \(n)")
            }
        }
    }

    /// Uneven blocks, some empty: rank r sends rank j `(r + j) % 3` rows of [r, j, row]; what arrives is each
    /// peer's block for this rank, in peer order.
    func testAllToAllWithUnevenSplits() throws {
        let n = 3
        func rows(from r: Int, to j: Int) -> [Float] { (0..<((r + j) % 3)).flatMap { [Float(r), Float(j), Float($0)] } }
        let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
            let r = comm.rank
            let splits = (0..<n).map { (r + $0) % 3 }
            let input = Tensor(shape: [splits.reduce(0, +), 3], values: (0..<n).flatMap { rows(from: r, to: $0) })
            let output = Tensor.zeros([splits.reduce(0, +), 3])
            try comm.allToAll(input, inputSplits: splits, into: output, outputSplits: splits).wait()
            return output.floats()
        }
        for (j, value) in results.enumerated() {
            XCTAssertEqual(value, (0..<n).flatMap { rows(from: $0, to: j) }, "rank \(j)")
        }
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 2, timeout: 20) { comm in
            try comm.allToAll(Tensor.zeros([2, 1]), inputSplits: [1, 2], into: Tensor.zeros([3, 1]), outputSplits: [1, 2]).wait()
        }) { XCTAssertTrue("\($0)".contains("summing to their rows"), "\($0)") }
    }

    /// A ring: every rank sends to the next and receives from the previous, twice, keeping message order.
    func testSendRecvRing() throws {
        for n in [2, 4] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
                let next = (comm.rank + 1) % n, previous = (comm.rank + n - 1) % n
                for message in 0..<2 {
                    _ = try comm.send(Tensor(shape: [2], values: [Float(comm.rank), Float(message)]), to: next)
                }
                var received: [Float] = []
                for _ in 0..<2 {
                    let x = Tensor.zeros([2])
                    try comm.recv(into: x, from: previous).wait()
                    received += x.floats()
                }
                return received
            }
            for (r, value) in results.enumerated() {
                let previous = Float((r + n - 1) % n)
                XCTAssertEqual(value, [previous, 0, previous, 1])
            }
        }
    }

    /// Receives posted before the messages exist take them in posting order, whatever order they are waited
    /// in (the pipeline schedule posts receives ahead and waits for each when it uses it).
    func testPostedReceivesMatchInPostingOrder() throws {
        let results = try ThreadCommunicator.run(worldSize: 2, timeout: 20) { comm -> [Float] in
            guard comm.rank == 1 else {
                for message in 0..<3 { _ = try comm.send(Tensor(shape: [1], values: [Float(message)]), to: 1) }
                return []
            }
            let received = (0..<3).map { _ in Tensor.zeros([1]) }
            let works = try received.map { try comm.recv(into: $0, from: 0) }
            for work in works.reversed() { try work.wait() }
            return received.flatMap { $0.floats() }
        }
        XCTAssertEqual(results[1], [0, 1, 2])
    }

    /// Both directions of a ring in one batch: each rank lists its receives before its sends and still gets
    /// both neighbours' messages (a pipeline stage's forward-and-backward exchange).
    func testBatchSendRecvBothWays() throws {
        for n in [2, 3] {
            let results = try ThreadCommunicator.run(worldSize: n, timeout: 20) { comm -> [Float] in
                let next = (comm.rank + 1) % n, previous = (comm.rank + n - 1) % n, r = Float(comm.rank)
                let fromPrevious = Tensor.zeros([2]), fromNext = Tensor.zeros([2])
                try comm.batchSendRecv([.recv(into: fromPrevious, from: previous), .recv(into: fromNext, from: next),
                                        .send(Tensor(shape: [2], values: [r, 1]), to: next),
                                        .send(Tensor(shape: [2], values: [r, -1]), to: previous)]).wait()
                return fromPrevious.floats() + fromNext.floats()
            }
            for (rank, value) in results.enumerated() {
                XCTAssertEqual(value, [Float((rank + n - 1) % n), 1, Float((rank + 1) % n), -1])
            }
        }
    }

    func testBarrierOrdersSideEffects() throws {
        let counter = LockedCounter()
        let seen = try ThreadCommunicator.run(worldSize: 4, timeout: 20) { comm -> Int in
            counter.increment()
            try comm.barrier()
            return counter.value
        }
        XCTAssertEqual(seen, [4, 4, 4, 4])
    }

    /// Ranks 0..3 split by parity with key = -rank: groups {3, 1} and {2, 0} in that order.
    func testSplitGroupsByColorOrderedByKey() throws {
        let results = try ThreadCommunicator.run(worldSize: 4, timeout: 20) { comm -> [Int] in
            let sub = try comm.splitThreads(color: comm.rank % 2, key: -comm.rank)
            let x = Tensor(shape: [1], values: [Float(comm.rank)])
            try sub.allReduce(x, op: .sum).wait()
            return [sub.rank, sub.size, Int(x.floats()[0])] + sub.worldRanks
        }
        XCTAssertEqual(results[0], [1, 2, 2, 2, 0])
        XCTAssertEqual(results[1], [1, 2, 4, 3, 1])
        XCTAssertEqual(results[2], [0, 2, 2, 2, 0])
        XCTAssertEqual(results[3], [0, 2, 4, 3, 1])
    }

    func testFailingRankEndsTheRunWithItsErrorWhileOthersWait() throws {
        struct Boom: Error {}
        let start = Date()
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 4, timeout: 60) { comm -> Void in
            if comm.rank == 2 { throw Boom() }
            try comm.barrier()
        }) { error in
            let failure = error as? ThreadRankFailure
            XCTAssertEqual(failure?.rank, 2)
            XCTAssertTrue(failure?.error is Boom)
            XCTAssertTrue("\(error)".contains("rank 2"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "blocked ranks must be woken by the abort, not time out")
    }

    func testMismatchedCollectivesTimeOutWithAClearMessage() throws {
        // Rank 1 is busy (not in a collective), so rank 0's barrier can only end by the timeout.
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 2, timeout: 0.5) { comm -> Void in
            if comm.rank == 0 { try comm.barrier() } else { Thread.sleep(forTimeInterval: 1) }
        }) { error in
            XCTAssertTrue("\(error)".contains("timed out after 0.5 s waiting for group ranks [1]"), "\(error)")
        }
    }

    func testRankThatReturnedWithoutJoiningEndsTheRunAtOnce() throws {
        // Rank 1 returns; ranks 0 and 2 wait in a barrier it never joins. No timeout needed to notice.
        let start = Date()
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 3, timeout: 60) { comm -> Void in
            if comm.rank != 1 { try comm.barrier() }
        }) { error in
            XCTAssertTrue("\(error)".contains("but world rank(s) [1] already returned"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    func testRanksWaitingOnEachOtherAfterOneReturnedAreNotADeadlock() throws {
        // Rank 0 returns at once; ranks 1 and 2 then meet in a subgroup collective, one of them late.
        let sums = try ThreadCommunicator.run(worldSize: 3, timeout: 60) { comm -> [Float] in
            let sub = try comm.split(color: comm.rank == 0 ? 0 : 1, key: comm.rank)
            guard comm.rank != 0 else { return [] }
            if comm.rank == 2 { Thread.sleep(forTimeInterval: 0.3) }
            let t = Tensor(shape: [1], values: [Float(comm.rank)])
            try sub.allReduce(t, op: .sum).wait()
            return t.floats()
        }
        XCTAssertEqual(sums, [[], [3], [3]])
    }

    func testShapeMismatchesAreRejected() throws {
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 2, timeout: 20) { comm -> Void in
            _ = try comm.allReduce(Tensor.zeros([comm.rank + 1]), op: .sum)
        }) { error in XCTAssertTrue("\(error)".contains("but rank"), "\(error)") }
        XCTAssertThrowsError(try ThreadCommunicator.run(worldSize: 2, timeout: 20) { comm -> Void in
            _ = try comm.allGather(Tensor.zeros([2]), into: Tensor.zeros([3]))
        }) { error in XCTAssertTrue("\(error)".contains("expected a [4] float32 tensor"), "\(error)") }
    }
}

private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
