import XCTest
@testable import MegatronTraining

/// The per-rank table `bench train` prints under `megatron launch`: the pipeline's bubble bounds and the
/// `bench:` line the multi-GPU device scripts read.
final class RankBenchmarkReportTests: XCTestCase {
    func testPipelineReportGivesBoundsPerGPUFiguresAndWaits() {
        let result = TrainingBenchmark(millisecondsPerIteration: 200, tokensPerSecond: 80_000, teraflops: 800, peakMemoryMiB: 900,
                                       peakDeviceMemoryMiB: (allocated: 1000, reserved: 1200), profile: nil,
                                       pipelineWaitMilliseconds: nil, allToAllWaitMilliseconds: nil)
        // Four stages of one rank each: tp pp dp ep, ms, pipeline wait, peak allocated / reserved, host, all-to-all wait.
        let rows = (0..<4).map { (stage: Int) -> [Float] in
            let wait = Float(10 * (stage + 1)), allocated = Float(4000 - 500 * stage)
            return [0, Float(stage), 0, 0, 200, wait, allocated, 5000, 900, -1]
        }
        let text = RankBenchmarkReport(rows: rows, result: result, worldSize: 4, stages: 4, chunks: 2, microBatches: 8).text
        // (p-1)/(m+p-1) = 3/11; interleaved (p-1)/(v*m+p-1) = 3/19.
        XCTAssertTrue(text.contains("1F1B bubble bound (p-1)/(m+p-1) = 27.3%, interleaved (p-1)/(v*m+p-1) = 15.8%"), text)
        let bench = text.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertEqual(bench, "bench: world=4 ms_per_iter=200.0 tokens_per_s=80000 tokens_per_s_per_gpu=20000 tflops_per_gpu=200.00 "
                       + "peak_alloc_mib_max=4000 p2p_wait_pct_max=20.0 bubble_bound_pct=15.8 a2a_wait_pct_mean=-1.0")
        // The last stage's row: its wait (40 ms of 200) and its peak allocation.
        XCTAssertTrue(text.contains("   3   0   3   0   0     200.0         40.0   20.0            -      -            2500"), text)
    }
}
