import Foundation
import XCTest
@testable import MegatronData

final class DataLoaderTests: XCTestCase {
    func testSamplerSlicesEachDataParallelRanksShare() throws {
        // Megatron: ids 4..<20 in blocks of mbs·dp = 6; rank 1 takes positions 2..<4 of each block.
        let rank1 = try PretrainingSampler(totalSamples: 20, consumedSamples: 4, microBatchSize: 2, dataParallelRank: 1, dataParallelSize: 3)
        XCTAssertEqual(Array(rank1), [[6, 7], [12, 13]])
        let keepLast = try PretrainingSampler(totalSamples: 20, consumedSamples: 4, microBatchSize: 2, dataParallelRank: 1,
                                              dataParallelSize: 3, dropLast: false)
        XCTAssertEqual(Array(keepLast), [[6, 7], [12, 13], [18, 19]])
        let rank2 = try PretrainingSampler(totalSamples: 20, consumedSamples: 4, microBatchSize: 2, dataParallelRank: 2,
                                           dataParallelSize: 3, dropLast: false)
        XCTAssertEqual(Array(rank2), [[8, 9], [14, 15]])
        XCTAssertThrowsError(try PretrainingSampler(totalSamples: 10, consumedSamples: 10, microBatchSize: 1)) {
            XCTAssertTrue("\($0)".contains("no samples left"))
        }
        XCTAssertThrowsError(try PretrainingSampler(totalSamples: 10, consumedSamples: 0, microBatchSize: 1, dataParallelRank: 2, dataParallelSize: 2))
    }

    private func dataset() throws -> GPTDataset {
        var config = GPTDatasetConfig(sequenceLength: 16, tokenizer: DatasetFixtures.tokenizer)
        config.resetAttentionMask = true
        let source = try IndexedDataset(pathPrefix: DatasetFixtures.path("corpus_a"))
        return try GPTDataset(source: source, datasetPath: nil, indices: 0..<60, numSamples: 40, split: .train, config: config)
    }

    func testLoaderStacksSamplesInSamplerOrder() throws {
        let data = try dataset()
        let sampler = try PretrainingSampler(totalSamples: data.count, consumedSamples: 0, microBatchSize: 4)
        let loader = GPTDataLoader(source: data, sampler: sampler, prefetch: 3)
        var seen = 0
        while let batch = loader.next() {
            XCTAssertEqual(batch.shape, [4, 16])
            let expected = batch.sampleIDs.map { data[$0] }
            XCTAssertEqual(batch.tokens, expected.flatMap(\.tokens))
            XCTAssertEqual(batch.labels, expected.flatMap(\.labels))
            XCTAssertEqual(batch.lossMask, expected.flatMap(\.lossMask))
            XCTAssertEqual(batch.positionIDs, expected.flatMap(\.positionIDs))
            XCTAssertEqual(batch.attentionResets, expected.map(\.attentionResets))
            XCTAssertEqual(batch.sampleIDs, Array(seen..<(seen + 4)))
            seen += 4
        }
        XCTAssertEqual(seen, data.count / 4 * 4)
    }

    func testResumeFromConsumedSamplesContinuesTheSameStream() throws {
        let data = try dataset()
        let all = GPTDataLoader(source: data, sampler: try PretrainingSampler(totalSamples: data.count, consumedSamples: 0, microBatchSize: 2))
        var full: [GPTBatch] = []
        while let b = all.next() { full.append(b) }
        let resumed = GPTDataLoader(source: data, sampler: try PretrainingSampler(totalSamples: data.count, consumedSamples: 10, microBatchSize: 2))
        var tail: [GPTBatch] = []
        while let b = resumed.next() { tail.append(b) }
        XCTAssertEqual(tail, Array(full.dropFirst(5)))
    }

    func testDroppingALoaderEarlyStopsItsThread() throws {
        let data = try dataset()
        for _ in 0..<20 {
            let loader = GPTDataLoader(source: data, sampler: try PretrainingSampler(totalSamples: data.count, consumedSamples: 0, microBatchSize: 1), prefetch: 1)
            XCTAssertNotNil(loader.next())
        }
    }
}
