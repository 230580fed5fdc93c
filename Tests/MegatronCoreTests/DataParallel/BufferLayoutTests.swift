import XCTest
@testable import MegatronCore

/// The expected layouts follow Megatron's `_ParamAndGradBuffer.__init__` (megatron-core 0.16.1) by hand:
/// parameters in reverse order, a bucket closed once it holds >= bucket_size elements, and for the
/// distributed optimizer parameter starts padded to 64 and bucket ends to lcm(dp, 128).
final class BufferLayoutTests: XCTestCase {
    func testWithoutDistributedOptimizerParametersArePackedInReverseOrder() {
        let layout = BufferLayout(elementCounts: [300, 20, 500], bucketSize: nil, dataParallelSize: 4,
                                  padForDistributedOptimizer: false)
        XCTAssertEqual(layout.parameterRanges, [520..<820, 500..<520, 0..<500])
        XCTAssertEqual(layout.buckets, [.init(range: 0..<820, numelUnpadded: 820, parameterIndices: [2, 1, 0])])
        XCTAssertEqual(layout.numel, 820)
    }

    func testBucketClosesOnceItHoldsBucketSizeElements() {
        let layout = BufferLayout(elementCounts: [100, 100, 100, 100, 50], bucketSize: 200, dataParallelSize: 2,
                                  padForDistributedOptimizer: false)
        // 50 + 100 + 100 = 250 >= 200 closes the first bucket; 100 + 100 closes the second.
        XCTAssertEqual(layout.buckets.map(\.range), [0..<250, 250..<450])
        XCTAssertEqual(layout.buckets.map(\.parameterIndices), [[4, 3, 2], [1, 0]])
        XCTAssertEqual(layout.parameterBuckets, [1, 1, 0, 0, 0])
    }

    func testDistributedOptimizerPadsParameterStartsAndBucketEnds() {
        let layout = BufferLayout(elementCounts: [300, 20, 500], bucketSize: 400, dataParallelSize: 2,
                                  padForDistributedOptimizer: true)
        // 500 closes bucket 0 at 500 -> padded to 512; 20 starts at 512; 300 starts at pad64(532) = 576.
        XCTAssertEqual(layout.parameterRanges, [576..<876, 512..<532, 0..<500])
        XCTAssertEqual(layout.buckets, [
            .init(range: 0..<512, numelUnpadded: 500, parameterIndices: [2]),
            .init(range: 512..<896, numelUnpadded: 364, parameterIndices: [1, 0]),
        ])
        XCTAssertEqual(layout.numel, 896)
    }

    func testBucketEndsPadToLcmOfDataParallelSizeAnd128() {
        let three = BufferLayout(elementCounts: [10], bucketSize: nil, dataParallelSize: 3, padForDistributedOptimizer: true)
        XCTAssertEqual(three.numel, 384)
        let busBandwidth = BufferLayout(elementCounts: [10], bucketSize: nil, dataParallelSize: 3,
                                        padForDistributedOptimizer: true, padForHighBusBandwidth: true)
        XCTAssertEqual(busBandwidth.numel, 3 * 65536)
    }

    func testSharedEmbeddingGetsItsOwnBucketWithDistributedOptimizer() {
        // Definition order: embedding (shared), layer, output; reversed: output, layer, embedding.
        let layout = BufferLayout(elementCounts: [64, 30, 40], bucketSize: nil, dataParallelSize: 2,
                                  padForDistributedOptimizer: true, needsOwnBucket: [true, false, false])
        XCTAssertEqual(layout.buckets.map(\.parameterIndices), [[2, 1], [0]])
        // Output 0..<40, layer at pad64(40) = 64..<94; the bucket closes at pad64(94) = 128 -> 128.
        XCTAssertEqual(layout.buckets.map(\.range), [0..<128, 128..<256])
        XCTAssertEqual(layout.buckets[0].numelUnpadded, 128)
        let plain = BufferLayout(elementCounts: [64, 30, 40], bucketSize: nil, dataParallelSize: 2,
                                 padForDistributedOptimizer: false, needsOwnBucket: [true, false, false])
        XCTAssertEqual(plain.buckets.count, 1, "the own-bucket rule applies only with the distributed optimizer")
    }

    func testShardPiecesCoverEveryParameterExactlyOnce() {
        let counts = [300, 20, 500, 7, 129]
        for dp in [1, 2, 3, 4] {
            let layout = BufferLayout(elementCounts: counts, bucketSize: 256, dataParallelSize: dp,
                                      padForDistributedOptimizer: true)
            var covered = counts.map { [Bool](repeating: false, count: $0) }
            for k in layout.buckets.indices {
                XCTAssertEqual(layout.buckets[k].range.count % dp, 0)
                for rank in 0..<dp {
                    let shard = layout.shard(of: k, rank: rank, dataParallelSize: dp)
                    for piece in layout.shardPieces(bucket: k, rank: rank, dataParallelSize: dp) {
                        XCTAssertEqual(piece.bufferRange.count, piece.parameterRange.count)
                        XCTAssertEqual(piece.shardRange.lowerBound, piece.bufferRange.lowerBound - shard.lowerBound)
                        XCTAssertEqual(piece.bufferRange.lowerBound,
                                       layout.parameterRanges[piece.parameterIndex].lowerBound + piece.parameterRange.lowerBound)
                        for e in piece.parameterRange {
                            XCTAssertFalse(covered[piece.parameterIndex][e], "element covered twice (dp \(dp))")
                            covered[piece.parameterIndex][e] = true
                        }
                    }
                }
            }
            XCTAssertTrue(covered.allSatisfy { $0.allSatisfy { $0 } }, "every element owned by some rank (dp \(dp))")
        }
    }

    func testShardPiecesCutThroughAParameter() {
        let layout = BufferLayout(elementCounts: [200], bucketSize: nil, dataParallelSize: 2, padForDistributedOptimizer: true)
        // One bucket of 256 elements: rank 0 owns 0..<128 (parameter 0..<128), rank 1 owns 128..<200 of it.
        XCTAssertEqual(layout.shardPieces(bucket: 0, rank: 0, dataParallelSize: 2),
                       [.init(parameterIndex: 0, bufferRange: 0..<128, parameterRange: 0..<128, shardRange: 0..<128)])
        XCTAssertEqual(layout.shardPieces(bucket: 0, rank: 1, dataParallelSize: 2),
                       [.init(parameterIndex: 0, bufferRange: 128..<200, parameterRange: 128..<200, shardRange: 0..<72)])
    }

    func testDefaultBucketSizeAndOverlapRule() throws {
        XCTAssertEqual(DistributedDataParallelConfig.defaultBucketSize(dataParallelSize: 8), 40_000_000)
        XCTAssertEqual(DistributedDataParallelConfig.defaultBucketSize(dataParallelSize: 64), 64_000_000)
        XCTAssertNil(DistributedDataParallelConfig(bucketSize: 1000).effectiveBucketSize(dataParallelSize: 2))
        XCTAssertEqual(DistributedDataParallelConfig(overlapGradReduce: true).effectiveBucketSize(dataParallelSize: 2), 40_000_000)
        XCTAssertThrowsError(try DistributedDataParallelConfig(overlapParamGather: true).validate()) { error in
            XCTAssertTrue("\(error)".contains("--overlap-param-gather"))
        }
    }
}
