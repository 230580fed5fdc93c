import Foundation
import MegatronCore
import XCTest

/// Pipeline schedules and layer placement against Megatron-LM's own code: the fixture records what
/// Megatron's 1F1B and interleaved schedules (batched, p2p-overlapped, and overlapped in warm-up and flush too) run and send, rank by rank, and where its placement functions put
/// the layers (scripts/fixtures/megatron_pipeline_schedules.py).
final class PipelineScheduleTests: XCTestCase {
    struct Fixture: Decodable {
        struct OneFOneB: Decodable { let pp: Int, microBatches: Int, ranks: [[String]] }
        struct Interleaved: Decodable { let pp: Int, vp: Int, microBatches: Int, groupSize: Int, ranks: [[String]]? }
        struct Placement: Decodable {
            let layers: Int, pp: Int, vp: Int?, first: Int?, last: Int?, embedding: Bool, loss: Bool
            let stages: [[[Int]]]?
        }
        let oneFOneB: [OneFOneB]
        let interleaved: [Interleaved]
        let interleavedOverlapped: [Interleaved]
        let interleavedWarmupFlush: [Interleaved]
        let placement: [Placement]
    }

    func fixture() throws -> Fixture {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "megatron-schedules", withExtension: "json", subdirectory: "Fixtures/pipeline"))
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func testOneFOneBEqualsMegatrons() throws {
        let cases = try fixture().oneFOneB
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            for (rank, expected) in c.ranks.enumerated() {
                let steps = try PipelineSchedule.oneFOneB(stages: c.pp, rank: rank, microBatches: c.microBatches)
                XCTAssertEqual(steps.map(\.description), expected, "pp \(c.pp) rank \(rank) micro-batches \(c.microBatches)")
            }
        }
    }

    func testInterleavedEqualsMegatrons() throws {
        try assertInterleavedEqualsMegatrons(try fixture().interleaved, overlapCommunication: false)
    }

    /// With p2p overlap (`overlap_p2p_comm`, Megatron's default for the interleaved schedule) each direction is
    /// exchanged after the pass that produces it.
    func testOverlappedInterleavedEqualsMegatrons() throws {
        try assertInterleavedEqualsMegatrons(try fixture().interleavedOverlapped, overlapCommunication: true)
    }

    /// With `overlap_p2p_comm_warmup_flush` the warm-up asks for each next activation before the forward (but on
    /// the first stage) and the flush for each next gradient before the backward (but on the last stage).
    func testWarmupFlushInterleavedEqualsMegatrons() throws {
        try assertInterleavedEqualsMegatrons(try fixture().interleavedWarmupFlush, overlapCommunication: true, warmupFlush: true)
        XCTAssertThrowsError(try PipelineSchedule.interleaved(stages: 4, rank: 0, microBatches: 8, chunks: 2, overlapWarmupFlush: true)) { error in
            XCTAssertTrue("\(error)".contains("--overlap-p2p-communication-warmup-flush"), "\(error)")
        }
    }

    private func assertInterleavedEqualsMegatrons(_ cases: [Fixture.Interleaved], overlapCommunication: Bool,
                                                  warmupFlush: Bool = false) throws {
        XCTAssertGreaterThan(cases.count, 8)
        for c in cases {
            for rank in 0..<c.pp {
                let label = "pp \(c.pp) vp \(c.vp) micro-batches \(c.microBatches) group \(c.groupSize) rank \(rank) "
                    + "overlap \(overlapCommunication) warm-up flush \(warmupFlush)"
                let schedule = {
                    try PipelineSchedule.interleaved(stages: c.pp, rank: rank, microBatches: c.microBatches, chunks: c.vp,
                                                     groupSize: c.groupSize, overlapCommunication: overlapCommunication,
                                                     overlapWarmupFlush: warmupFlush)
                }
                guard let ranks = c.ranks else {
                    XCTAssertThrowsError(try schedule(), label)
                    continue
                }
                XCTAssertEqual(try schedule().map(\.description), ranks[rank], label)
            }
        }
    }

    func testLayerPlacementEqualsMegatrons() throws {
        let cases = try fixture().placement
        XCTAssertGreaterThan(cases.count, 15)
        for c in cases {
            let label = "\(c.layers) layers, pp \(c.pp), vp \(c.vp.map(String.init) ?? "-"), first \(c.first.map(String.init) ?? "-"), "
                + "last \(c.last.map(String.init) ?? "-"), embedding \(c.embedding), loss \(c.loss)"
            let make = {
                try PipelineLayerPlacement(layers: c.layers, stages: c.pp, virtualStages: c.vp, firstStageLayers: c.first,
                                           lastStageLayers: c.last, accountForEmbedding: c.embedding, accountForLoss: c.loss)
            }
            guard let stages = c.stages else {
                XCTAssertThrowsError(try make(), label)
                continue
            }
            let placement = try make()
            for (rank, chunks) in stages.enumerated() {
                for (chunk, expected) in chunks.enumerated() {
                    let range = placement.layers(rank: rank, chunk: chunk)
                    XCTAssertEqual([range.lowerBound, range.count], expected, "\(label): rank \(rank) chunk \(chunk)")
                }
            }
        }
    }

    /// 1F1B keeps at most `stages - rank` micro-batches' activations alive (the bound the schedule exists for);
    /// interleaving trades memory for a smaller bubble: its warm-up count plus one.
    func testActivationsAliveStayWithinTheScheduleBound() throws {
        for stages in 1...4 {
            for rank in 0..<stages {
                for microBatches in [1, 3, 8] {
                    let steps = try PipelineSchedule.oneFOneB(stages: stages, rank: rank, microBatches: microBatches)
                    XCTAssertEqual(steps.peakInFlight, min(stages - rank, microBatches))
                }
            }
        }
        let interleaved = try PipelineSchedule.interleaved(stages: 4, rank: 0, microBatches: 8, chunks: 2)
        XCTAssertEqual(interleaved.peakInFlight, 2 * 3 + 4 + 1)
        XCTAssertEqual(PipelineSchedule.noPipelining(microBatches: 4).peakInFlight, 1)
    }

    /// Every pass runs exactly once, and each forward precedes its backward.
    func testEveryPassRunsOnceForwardBeforeBackward() throws {
        for rank in 0..<3 {
            let steps = try PipelineSchedule.interleaved(stages: 3, rank: rank, microBatches: 6, chunks: 2)
            var forwards: [PipelineWork] = [], backwards: [PipelineWork] = []
            for step in steps {
                if case .forward(let w) = step { forwards.append(w) }
                if case .backward(let w) = step {
                    XCTAssertTrue(forwards.contains(w), "backward \(w) before its forward on rank \(rank)")
                    backwards.append(w)
                }
            }
            XCTAssertEqual(Set(forwards).count, 12)
            XCTAssertEqual(Set(backwards), Set(forwards))
        }
    }

    func testImpossibleLayoutsAreNamed() {
        XCTAssertThrowsError(try PipelineLayerPlacement(layers: 10, stages: 4)) { error in
            XCTAssertTrue("\(error)".contains("--num-layers 10"), "\(error)")
            XCTAssertTrue("\(error)".contains("--pipeline-model-parallel-size 4"), "\(error)")
        }
        XCTAssertThrowsError(try PipelineLayerPlacement(layers: 10, stages: 2, firstStageLayers: 3, lastStageLayers: 3)) { error in
            XCTAssertTrue("\(error)".contains("--decoder-first-pipeline-num-layers"), "\(error)")
        }
        XCTAssertThrowsError(try PipelineSchedule.oneFOneB(stages: 2, rank: 2, microBatches: 4))
        XCTAssertThrowsError(try PipelineSchedule.interleaved(stages: 4, rank: 0, microBatches: 2, chunks: 2)) { error in
            XCTAssertTrue("\(error)".contains("--microbatch-group-size-per-virtual-pipeline-stage"), "\(error)")
        }
    }
}
