import XCTest
@testable import MegatronCUDA

/// How the norm kernels lay rows over thread teams (no GPU needed).
final class NormLaunchPlanTests: XCTestCase {
    private func forward(_ columns: Int, threads: Int = 128) -> [Int]? {
        NormLaunchPlan.layout(columns: columns, backward: false, normThreads: threads).map { [$0.team, $0.slots] }
    }

    private func backward(_ columns: Int, threads: Int = 128) -> [Int]? {
        NormLaunchPlan.layout(columns: columns, backward: true, normThreads: threads).map { [$0.team, $0.slots] }
    }

    func testRowsThatFitAWarpTakeOne() {
        XCTAssertEqual(forward(768), [32, 3])    // GPT-2: 3 chunks of 8 per thread
        XCTAssertEqual(backward(768), [32, 3])
        XCTAssertEqual(forward(1024), [32, 4])
        XCTAssertEqual(forward(77), [32, 1])
        XCTAssertEqual(backward(100), [32, 1])
        XCTAssertEqual(backward(512), [32, 2])
        XCTAssertEqual(forward(768, threads: 1024), [32, 3])   // the block size does not change the team
    }

    func testWideRowsSpreadOverNormThreads() {
        XCTAssertEqual(forward(4096), [128, 4])
        XCTAssertEqual(forward(4096, threads: 256), [256, 2])
        XCTAssertEqual(forward(4096, threads: 512), [512, 1])
        XCTAssertEqual(forward(4096, threads: 1024), [512, 1])   // at most one thread per chunk
        XCTAssertEqual(forward(4096, threads: 32), [128, 4])     // at least what holds the row
        XCTAssertEqual(backward(4096), [512, 1])                 // 4 x 128 threads
        XCTAssertEqual(backward(4096, threads: 64), [256, 2])
        XCTAssertEqual(backward(4096, threads: 32), [192, 3])
        XCTAssertEqual(backward(1024), [128, 1])
        XCTAssertEqual(backward(2056), [288, 1])                 // 257 chunks: whole warps
        XCTAssertEqual(forward(4100), [160, 4])                  // 513 chunks over 128 x 4 slots do not fit
    }

    func testWidestRows() {
        XCTAssertEqual(backward(12288), [512, 3])
        XCTAssertEqual(backward(CUDAKernels.normMaxColumns), [512, 3])
        XCTAssertNil(backward(CUDAKernels.normMaxColumns + 8))
        XCTAssertEqual(forward(32768), [1024, 4])
        XCTAssertNil(forward(32776))
    }

    /// Every slot count a layout picks has a compiled kernel and, backward, a guaranteed occupancy.
    func testLayoutsUseCompiledSlotCounts() {
        for columns in stride(from: 8, through: CUDAKernels.normMaxColumns, by: 8) {
            for threads in [32, 128, 512] {
                guard let f = forward(columns, threads: threads), let b = backward(columns, threads: threads) else {
                    return XCTFail("\(columns) columns, \(threads) threads: no layout")
                }
                XCTAssert((1...NormLaunchPlan.forwardMaxSlots).contains(f[1]) && f[0] * f[1] * 8 >= columns)
                XCTAssertNotNil(NormLaunchPlan.backwardMinBlocks[b[1]], "\(columns) columns: \(b[1]) slots")
                XCTAssert(b[0] * b[1] * 8 >= columns && b[0] <= NormLaunchPlan.backwardMaxThreads)
            }
        }
    }

    /// The slot counts and backward occupancies the plan assumes are the ones norm.cu compiles.
    func testKernelSourceMatchesThePlan() throws {
        let source = try XCTUnwrap(EmbeddedKernels.sources["norm.cu"])
        for slots in 1...NormLaunchPlan.forwardMaxSlots {
            XCTAssertTrue(source.contains("NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, \(slots))"), "forward, \(slots) slots")
        }
        XCTAssertFalse(source.contains("NORM_FORWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, \(NormLaunchPlan.forwardMaxSlots + 1))"))
        XCTAssertEqual(Set(NormLaunchPlan.backwardMinBlocks.keys), Set(1...NormLaunchPlan.backwardMaxSlots))
        for (slots, blocks) in NormLaunchPlan.backwardMinBlocks {
            XCTAssertTrue(source.contains("NORM_BACKWARD_KERNELS(PREFIX, FUSED, DROPOUT, SUFFIX, TYPE, \(slots))"), "backward, \(slots) slots")
            XCTAssertTrue(source.contains("#define NORM_BACKWARD_MIN_BLOCKS_\(slots) \(blocks)\n"), "backward, \(slots) slots")
        }
        XCTAssertTrue(source.contains("__launch_bounds__(\(NormLaunchPlan.forwardMaxThreads))"))
        XCTAssertTrue(source.contains("__launch_bounds__(\(NormLaunchPlan.backwardMaxThreads), NORM_BACKWARD_MIN_BLOCKS_##SLOTS)"))
    }
}
