import XCTest
@testable import MegatronCUDA

/// How the norm kernels lay rows over thread teams (no GPU needed).
final class NormLaunchPlanTests: XCTestCase {
    func testTeamsHoldTheRowWithFewestIdleSlots() {
        let forward = { NormLaunchPlan.team(columns: $0, slots: NormLaunchPlan.forwardSlots, maxTeam: NormLaunchPlan.forwardMaxThreads) }
        let backward = { NormLaunchPlan.team(columns: $0, slots: NormLaunchPlan.backwardSlots, maxTeam: NormLaunchPlan.backwardMaxThreads) }
        XCTAssertEqual(forward(768), 32)     // GPT-2: a warp per row, 3 chunks of 8 per thread
        XCTAssertEqual(backward(768), 32)
        XCTAssertEqual(forward(4096), 128)   // 4 chunks per thread
        XCTAssertEqual(backward(4096), 256)  // 2 chunks: 3 would leave a third of the slots idle
        XCTAssertEqual(forward(77), 32)
        XCTAssertEqual(backward(12288), 512)
        XCTAssertEqual(backward(NeuralKernels.normMaxColumns), 512)
        XCTAssertNil(backward(NeuralKernels.normMaxColumns + 8))
        XCTAssertEqual(forward(32768), 1024)
        XCTAssertNil(forward(32776))
    }
}
