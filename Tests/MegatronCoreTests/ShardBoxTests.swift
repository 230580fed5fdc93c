import XCTest
@testable import MegatronCore

final class ShardBoxTests: XCTestCase {
    /// The boxes covering a flat range of a C-ordered tensor hold exactly its elements, in order, and few boxes.
    func testBoxesCoverAFlatRangeExactly() {
        let shape = [3, 4, 5]
        for (start, end) in [(0, 60), (7, 8), (3, 57), (20, 40), (19, 41), (0, 1), (59, 60), (12, 13)] {
            let boxes = ShardBox.covering(flat: start..<end, of: shape)
            var flat: [Int] = []
            for box in boxes {
                for i in 0..<box.sizes[0] {
                    for j in 0..<box.sizes[1] {
                        for k in 0..<box.sizes[2] { flat.append((box.offsets[0] + i) * 20 + (box.offsets[1] + j) * 5 + box.offsets[2] + k) }
                    }
                }
            }
            XCTAssertEqual(flat, Array(start..<end), "\(start)..<\(end): \(boxes)")
            XCTAssertLessThanOrEqual(boxes.count, 5)
        }
        XCTAssertEqual(ShardBox.covering(flat: 20..<40, of: shape), [ShardBox(offsets: [1, 0, 0], sizes: [1, 4, 5])])
    }

    func testIntersection() {
        let a = ShardBox(offsets: [0, 4], sizes: [8, 4]), b = ShardBox(offsets: [6, 0], sizes: [4, 6])
        XCTAssertEqual(a.intersection(b), ShardBox(offsets: [6, 4], sizes: [2, 2]))
        XCTAssertNil(a.intersection(ShardBox(offsets: [0, 0], sizes: [8, 4])))
    }
}
