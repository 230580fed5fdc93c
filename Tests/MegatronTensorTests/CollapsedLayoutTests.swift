import XCTest
@testable import MegatronTensor

/// The launch-time simplification of elementwise operands (pure bookkeeping, runs everywhere).
final class CollapsedLayoutTests: XCTestCase {
    func testContiguousOperandsBecomeOneDimension() {
        let l = CollapsedLayout(shape: [2, 3, 4], strides: [[12, 4, 1], [12, 4, 1]])
        XCTAssertEqual(l.shape, [24])
        XCTAssertEqual(l.strides, [[1], [1]])
    }

    func testTransposeAndBroadcastKeepTheirDimensions() {
        // out [4, 5] contiguous, a transposed view, b a broadcast row.
        let l = CollapsedLayout(shape: [4, 5], strides: [[5, 1], [1, 4], [0, 1]])
        XCTAssertEqual(l.shape, [4, 5])
        XCTAssertEqual(l.strides, [[5, 1], [1, 4], [0, 1]])
    }

    func testSizeOneDimensionsDropAndPartialMerges() {
        // [2, 1, 3, 4] where the last two dims are contiguous for both operands but the first is not.
        let l = CollapsedLayout(shape: [2, 1, 3, 4], strides: [[12, 12, 4, 1], [24, 7, 4, 1]])
        XCTAssertEqual(l.shape, [2, 12])
        XCTAssertEqual(l.strides, [[12, 1], [24, 1]])
        let scalar = CollapsedLayout(shape: [], strides: [[], []])
        XCTAssertEqual(scalar.shape, [1])
        XCTAssertEqual(scalar.strides, [[0], [0]])
    }
}
