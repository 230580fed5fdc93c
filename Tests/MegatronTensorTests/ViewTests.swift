import XCTest
@testable import MegatronTensor

final class ViewTests: XCTestCase {
    let x = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])

    func testTransposeIsAViewAndContiguousCopies() {
        let t = x.transposed(0, 1)
        XCTAssertTrue(t.storage === x.storage)
        XCTAssertFalse(t.isContiguous)
        XCTAssertEqual(t.shape, [3, 2])
        XCTAssertEqual(t.floats(), [1, 4, 2, 5, 3, 6])
        XCTAssertFalse(t.madeContiguous().storage === x.storage)
    }

    func testReshapeInfersAndSharesStorage() {
        let r = x.reshaped([3, -1])
        XCTAssertEqual(r.shape, [3, 2])
        XCTAssertTrue(r.storage === x.storage)
        XCTAssertEqual(x.transposed(0, 1).reshaped([6]).floats(), [1, 4, 2, 5, 3, 6])
    }

    func testNarrowSelectAndWritesThroughViews() {
        let n = x.narrowed(1, start: 1, length: 2)
        XCTAssertEqual(n.floats(), [2, 3, 5, 6])
        XCTAssertEqual(x.selected(0, 1).floats(), [4, 5, 6])
        let y = Tensor(shape: [2, 3], values: [Float](repeating: 0, count: 6))
        Ops.copy(Tensor(shape: [2, 2], values: [7, 8, 9, 10]), into: y.narrowed(1, start: 1, length: 2))
        XCTAssertEqual(y.floats(), [0, 7, 8, 0, 9, 10])
    }

    func testExpandBroadcastsWithZeroStrides() {
        let row = Tensor(shape: [3], values: [1, 2, 3])
        let e = row.expanded(to: [2, 3])
        XCTAssertEqual(e.strides, [0, 1])
        XCTAssertEqual(e.floats(), [1, 2, 3, 1, 2, 3])
        XCTAssertEqual(Tensor(shape: [2, 1], values: [5, 6]).expanded(to: [2, 2]).floats(), [5, 5, 6, 6])
    }

    func testPermuteAndSqueeze() {
        let t = Tensor(shape: [2, 1, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t.permuted([2, 0, 1]).shape, [3, 2, 1])
        XCTAssertEqual(t.permuted([2, 0, 1]).floats(), [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(t.squeezed(1).shape, [2, 3])
        XCTAssertEqual(t.squeezed(1).unsqueezed(0).shape, [1, 2, 3])
    }

    func testCreation() {
        XCTAssertEqual(Tensor.arange(2, 7, step: 2).ints(), [2, 4, 6])
        XCTAssertEqual(Tensor.full([2, 2], 3.5, dtype: .bfloat16).floats(), [3.5, 3.5, 3.5, 3.5])
        XCTAssertEqual(Tensor.ones([3]).floats(), [1, 1, 1])
        XCTAssertEqual(Tensor(scalar: 2).shape, [])
    }
}
