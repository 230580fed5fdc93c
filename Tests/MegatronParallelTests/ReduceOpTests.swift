import MegatronParallel
import XCTest

final class ReduceOpTests: XCTestCase {
    func testNamesMatchTorchDistributed() {
        XCTAssertEqual([ReduceOp.sum, .average, .max].map(\.description), ["sum", "avg", "max"])
    }
}
