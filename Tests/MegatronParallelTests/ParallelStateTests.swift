import MegatronParallel
import MegatronTensor
import XCTest

/// Rank groups against Megatron's layout (megatron-facts.md section 8), computed here independently: every
/// rank's coordinates come from `rank = tp + cp·TP + dp·TP·CP + pp·TP·CP·DP`, and a group along some axes is
/// the set of ranks sharing the other coordinates, ordered by the member coordinates (leftmost axis fastest).
final class ParallelStateTests: XCTestCase {
    /// The docstring example of `initialize_model_parallel`: 16 GPUs, TP 2, PP 4.
    func testMegatronDocstringExample() throws {
        let layout = try ParallelLayout(worldSize: 16, tensor: 2, pipeline: 4)
        XCTAssertEqual(layout.data, 2)
        XCTAssertEqual(layout.dense.groups("tp"), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]])
        XCTAssertEqual(layout.dense.groups("dp"), [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9, 11], [12, 14], [13, 15]])
        XCTAssertEqual(layout.dense.groups("pp"), [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]])
        XCTAssertEqual(ParallelState.embeddingGroups(pipelineGroups: layout.dense.groups("pp")),
                       [[0, 12], [1, 13], [2, 14], [3, 15]])
    }

    func testDenseGroupsMatchTheRankFormula() throws {
        for (world, tp, cp, pp) in [(8, 2, 1, 2), (16, 2, 2, 2), (8, 1, 2, 1), (12, 3, 1, 2)] {
            let layout = try ParallelLayout(worldSize: world, tensor: tp, pipeline: pp, context: cp)
            let sizes = ["tp": tp, "cp": cp, "dp": world / (tp * cp * pp), "pp": pp]
            for axes in ["tp", "cp", "dp", "pp", "dp-cp", "tp-pp", "tp-cp", "tp-dp-cp"] {
                XCTAssertEqual(sortedGroups(layout.dense.groups(axes)),
                               expectedGroups(members: axes.split(separator: "-").map(String.init), sizes: sizes),
                               "\(axes) for world \(world) TP \(tp) CP \(cp) PP \(pp)")
            }
        }
    }

    /// World 8, TP 2, PP 2 (DP 2) spelled out: the lists a reader can check against Megatron by hand.
    func testWorld8TP2PP2Lists() throws {
        let layout = try ParallelLayout(worldSize: 8, tensor: 2, pipeline: 2)
        XCTAssertEqual(layout.dense.groups("tp"), [[0, 1], [2, 3], [4, 5], [6, 7]])
        XCTAssertEqual(layout.dense.groups("dp"), [[0, 2], [1, 3], [4, 6], [5, 7]])
        XCTAssertEqual(layout.dense.groups("pp"), [[0, 4], [1, 5], [2, 6], [3, 7]])
        XCTAssertEqual(layout.dense.groups("tp-pp"), [[0, 1, 4, 5], [2, 3, 6, 7]])
    }

    /// With "tp-cp-ep-pp-dp" (--use-tp-pp-dp-mapping), pp varies before dp.
    func testTpPpDpOrder() throws {
        let layout = try ParallelLayout(worldSize: 8, tensor: 2, pipeline: 2, order: "tp-cp-ep-pp-dp")
        XCTAssertEqual(layout.dense.groups("pp"), [[0, 2], [1, 3], [4, 6], [5, 7]])
        XCTAssertEqual(layout.dense.groups("dp"), [[0, 4], [1, 5], [2, 6], [3, 7]])
    }

    /// Expert grid of world 8, TP 2, EP 2, PP 1: ETP = TP = 2, expert DP = 8 / 4 = 2; rank = etp + 2·ep + 4·edp.
    func testExpertGroups() throws {
        let layout = try ParallelLayout(worldSize: 8, tensor: 2, expert: 2)
        XCTAssertEqual(layout.expertData, 2)
        XCTAssertEqual(layout.expertGrid.groups("ep"), [[0, 2], [1, 3], [4, 6], [5, 7]])
        XCTAssertEqual(layout.expertGrid.groups("tp"), [[0, 1], [2, 3], [4, 5], [6, 7]])
        XCTAssertEqual(layout.expertGrid.groups("dp"), [[0, 4], [1, 5], [2, 6], [3, 7]])
    }

    func testInvalidLayoutsNameTheProblem() {
        XCTAssertThrowsError(try ParallelLayout(worldSize: 6, tensor: 4)) { error in
            XCTAssertEqual("\(error)", "world size 6 is not divisible by tensor 4 × pipeline 1 × context 1 = 4")
        }
        XCTAssertThrowsError(try ParallelLayout(worldSize: 8, tensor: 2, expert: 3)) { error in
            XCTAssertTrue("\(error)".contains("expert 3"), "\(error)")
        }
        XCTAssertThrowsError(try ParallelLayout(worldSize: 8, tensor: 0)) { error in
            XCTAssertTrue("\(error)".contains("tensor parallel size must be at least 1"), "\(error)")
        }
        XCTAssertThrowsError(try ParallelLayout(worldSize: 8, tensor: 2, order: "cp-dp-pp")) { error in
            XCTAssertTrue("\(error)".contains("axis 'tp' has size 2 but is missing from order"), "\(error)")
        }
    }

    /// Built over 16 thread ranks (TP 2, CP 2, PP 2): each rank's communicators hold exactly the listed ranks
    /// in order, and a reduction over dp-cp adds the four ranks of that group.
    func testParallelStateOverThreads() throws {
        let layout = try ParallelLayout(worldSize: 16, tensor: 2, pipeline: 2, context: 2)
        let results = try ThreadCommunicator.run(worldSize: 16, timeout: 60) { world -> [String: [Int]] in
            let state = try ParallelState(layout: layout, world: world)
            let x = Tensor(shape: [1], values: [Float(world.rank)])
            try state.dataWithContext.allReduce(x, op: .sum).wait()
            var seen: [String: [Int]] = ["dp-cp sum": [Int(x.floats()[0])]]
            let named: [(String, Communicator?)] = [
                ("tp", state.tensor), ("pp", state.pipeline), ("cp", state.context), ("dp", state.data),
                ("dp-cp", state.dataWithContext), ("tp-pp", state.modelParallel), ("tp-cp", state.tensorWithContext),
                ("tp-dp", state.tensorWithData), ("tp-dp-cp", state.tensorWithDataAndContext),
                ("embedding", state.embedding), ("ep", state.expert), ("expert tp", state.expertTensor),
                ("expert dp", state.expertData),
            ]
            for case let (name, group?) in named { seen[name] = Self.worldRanks(of: group, world: world) }
            seen["coordinates"] = [state.tensorRank, state.contextRank, state.dataRank, state.pipelineRank]
            seen["first, last stage"] = [state.isFirstPipelineStage ? 1 : 0, state.isLastPipelineStage ? 1 : 0]
            return seen
        }
        let sizes = ["tp": 2, "cp": 2, "dp": 2, "pp": 2]
        for (rank, seen) in results.enumerated() {
            for axes in ["tp", "pp", "cp", "dp", "dp-cp", "tp-pp", "tp-cp", "tp-dp", "tp-dp-cp"] {
                let expected = expectedGroups(members: axes.split(separator: "-").map(String.init), sizes: sizes)
                    .first { $0.contains(rank) }
                XCTAssertEqual(seen[axes], expected, "\(axes) group of rank \(rank)")
            }
            XCTAssertEqual(seen["dp-cp sum"], [seen["dp-cp"]!.reduce(0, +)])
            XCTAssertEqual(seen["coordinates"], [rank % 2, rank / 2 % 2, rank / 4 % 2, rank / 8])
            XCTAssertEqual(seen["first, last stage"], rank < 8 ? [1, 0] : [0, 1], "rank \(rank)")
            let pipeline = seen["pp"]!
            let isEnd = rank == pipeline.first || rank == pipeline.last
            XCTAssertEqual(seen["embedding"], isEnd ? [pipeline.first!, pipeline.last!] : nil, "rank \(rank)")
            XCTAssertEqual(seen["ep"], [rank], "EP 1: every rank is its own expert group")
            XCTAssertEqual(seen["expert tp"], seen["tp"])
            XCTAssertEqual(seen["expert dp"], seen["dp-cp"], "with EP 1 experts reduce over data and context")
        }
    }

    /// Axes of size 1 cost no split (a `SingleRankCommunicator`), groups of the same ranks share one
    /// communicator, and a group of the whole world is the world.
    func testSizeOneAndRepeatedGroupsAreNotSplit() throws {
        let layout = try ParallelLayout(worldSize: 4, tensor: 2)
        let checks = try ThreadCommunicator.run(worldSize: 4, timeout: 60) { world -> [Bool] in
            let state = try ParallelState(layout: layout, world: world)
            return [state.pipeline is SingleRankCommunicator, state.context is SingleRankCommunicator,
                    state.expert is SingleRankCommunicator, state.modelParallel === state.tensor,
                    state.dataWithContext === state.data, state.tensorWithData === state.world,
                    state.embedding is SingleRankCommunicator, state.isFirstPipelineStage && state.isLastPipelineStage]
        }
        for (rank, flags) in checks.enumerated() { XCTAssertEqual(flags, Array(repeating: true, count: 8), "rank \(rank)") }
        let alone = ParallelState.singleRank()
        XCTAssertEqual([alone.world.size, alone.tensor.size, alone.data.size, alone.pipeline.size], [1, 1, 1, 1])
        XCTAssertThrowsError(try ParallelState(layout: layout, world: SingleRankCommunicator())) { error in
            XCTAssertTrue("\(error)".contains("1 ranks but the layout is for 4"), "\(error)")
        }
    }

    /// A group of one rank reduces to itself, scales a pre-multiplied sum, and gathers by copying.
    func testSingleRankCollectives() throws {
        let alone = SingleRankCommunicator()
        let x = Tensor(shape: [2], values: [1, 2])
        try alone.allReduce(x, op: .sum).wait()
        XCTAssertEqual(x.floats(), [1, 2])
        try alone.allReduce(x, op: .scaledSum(0.5)).wait()
        XCTAssertEqual(x.floats(), [0.5, 1])
        let out = Tensor.zeros([2])
        try alone.allGather(x, into: out).wait()
        XCTAssertEqual(out.floats(), [0.5, 1])
        XCTAssertThrowsError(try alone.send(x, to: 1))
    }

    private static func worldRanks(of group: Communicator, world: Communicator) -> [Int] {
        (group as? ThreadCommunicator)?.worldRanks ?? [world.rank]
    }

    // MARK: Independent reference

    /// Groups along `members` of the dense grid, from the rank formula (axes fastest first: tp, cp, dp, pp).
    private func expectedGroups(members: [String], sizes: [String: Int]) -> [[Int]] {
        let axes = ["tp", "cp", "dp", "pp"]
        let world = axes.map { sizes[$0]! }.reduce(1, *)
        var byOthers: [[Int]: [(position: Int, rank: Int)]] = [:]
        for rank in 0..<world {
            var remaining = rank
            var coordinates: [String: Int] = [:]
            for axis in axes {
                coordinates[axis] = remaining % sizes[axis]!
                remaining /= sizes[axis]!
            }
            var position = 0, scale = 1
            for axis in axes where members.contains(axis) {
                position += coordinates[axis]! * scale
                scale *= sizes[axis]!
            }
            let others = axes.filter { !members.contains($0) }.map { coordinates[$0]! }
            byOthers[others, default: []].append((position, rank))
        }
        return sortedGroups(byOthers.values.map { $0.sorted { $0.position < $1.position }.map(\.rank) })
    }

    private func sortedGroups(_ groups: [[Int]]) -> [[Int]] { groups.sorted { $0[0] < $1[0] } }
}
