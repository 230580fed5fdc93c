import XCTest
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// The pipeline and expert-parallel training runs of `PipelineTrainingTests` and `ExpertParallelTrainingTests`,
/// recorded on thread ranks and replayed by `NCCLOrderCheck`: every group's collectives agree on every member,
/// every send has its receive of the same size, and nothing would hang on NCCL's streams (which thread ranks,
/// with buffered sends, cannot show). The replay's own failures are shown by `NCCLOrderCheckTests`.
final class PipelineCommunicationOrderTests: XCTestCase {
    typealias Layout = PipelineTrainingTests.Layout

    /// Runs `body` on `worldSize` recorded thread ranks and checks the log; returns what the check saw.
    @discardableResult
    func checkOrder(worldSize: Int, file: StaticString = #filePath, line: UInt = #line,
                    _ body: @escaping (Communicator) throws -> Void) throws -> NCCLOrderCheck.Summary {
        let log = CommunicationLog(worldSize: worldSize)
        _ = try ThreadCommunicator.run(worldSize: worldSize, timeout: 60) { world in
            try body(RecordingCommunicator(world: world, log: log))
        }
        let summary = try NCCLOrderCheck.check(log)
        XCTAssertGreaterThan(summary.transfers, 0, "no point-to-point transfer recorded", file: file, line: line)
        return summary
    }

    func checkPipeline(_ layout: Layout, file: StaticString = #filePath, line: UInt = #line) throws {
        try checkOrder(worldSize: layout.worldSize, file: file, line: line) { world in
            _ = try PipelineTrainingTests.train(layout, pipelined: true, world: world)
        }
    }

    func testOneFOneBTwoAndFourStages() throws {
        try checkPipeline(Layout(pipeline: 2))
        try checkPipeline(Layout(pipeline: 2, untied: true))
        try checkPipeline(Layout(pipeline: 4))
    }

    /// Two stages with two chunks: both neighbours are one rank, and the gradients go over a group of their own.
    func testInterleavedTwoStages() throws {
        try checkPipeline(Layout(pipeline: 2, virtualStages: 2))
        try checkPipeline(Layout(pipeline: 2, virtualStages: 2, overlapP2P: false))
    }

    func testInterleavedFourStagesOverlappedAndBatched() throws {
        try checkPipeline(Layout(pipeline: 4, layers: 8, virtualStages: 2))
        try checkPipeline(Layout(pipeline: 4, layers: 8, virtualStages: 2, overlapP2P: false))
    }

    /// The data-parallel reduction started in the backward (on its own stream), the tied embeddings' sum over
    /// the first and last stages and the distributed optimizer's gathers, around the pipeline's transfers.
    func testPipelineWithDataParallelAndDistributedOptimizer() throws {
        try checkPipeline(Layout(pipeline: 2, data: 2, distributedOptimizer: true, overlapGradReduce: true))
        try checkPipeline(Layout(pipeline: 2, data: 2, virtualStages: 2, overlapGradReduce: true))
    }

    func testPipelineWithTensorParallel() throws {
        try checkPipeline(Layout(tensor: 2, pipeline: 2))
    }

    /// The all-to-all dispatcher's uneven all-to-alls are grouped transfers on NCCL: every expert-parallel rank's
    /// blocks must pair with its peers', through the token counts all-gathered before.
    func testExpertParallelAllToAll() throws {
        typealias EPLayout = ExpertParallelTrainingTests.Layout
        let layouts = [EPLayout(expert: 4, world: 4, dispatcher: .alltoall),
                       EPLayout(expert: 2, world: 4, dispatcher: .alltoall, distributedOptimizer: true)]
        for layout in layouts {
            try checkOrder(worldSize: layout.world) { world in _ = try ExpertParallelTrainingTests.train(layout, world: world) }
        }
    }
}
