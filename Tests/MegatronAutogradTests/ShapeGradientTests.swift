import XCTest
import MegatronTensor
@testable import MegatronAutograd

final class ShapeGradientTests: XCTestCase {
    let x = sample([2, 3, 4], seed: 11)

    func testViews() {
        checkGradients([x]) { $0[0].reshape([6, 4]) }
        checkGradients([x]) { $0[0].transpose(0, 2) }
        checkGradients([x]) { $0[0].permute([1, 2, 0]) }
        checkGradients([x]) { $0[0].narrow(2, start: 1, length: 2) }
        checkGradients([sample([3, 1], seed: 12)]) { $0[0].expand(to: [2, 3, 4]) }
        checkGradients([x]) { $0[0].unsqueeze(1).squeeze(1) }
    }

    /// A row-major copy of a view stays on the tape (MegatronTensor's `madeContiguous()` would detach it): the
    /// gradient passes through to the view's input, in the input's layout.
    func testContiguousCopyPassesGradients() {
        checkGradients([x]) { $0[0].transpose(0, 2).contiguous() }
        checkGradients([x]) { $0[0].narrow(1, start: 1, length: 2).contiguous() * $0[0].narrow(1, start: 0, length: 2) }

        var leaf = x.madeContiguous().detached()
        leaf.requiresGrad = true
        let y = leaf.permute([2, 0, 1]).contiguous()
        XCTAssertTrue(y.isContiguous)
        XCTAssertEqual(y.floats(), x.permuted([2, 0, 1]).madeContiguous().floats())
        let weights = sample([4, 2, 3], seed: 21)
        (y * weights).sum().backward()
        XCTAssertEqual(leaf.grad?.shape, [2, 3, 4])
        XCTAssertEqual(leaf.grad?.madeContiguous().floats(), weights.permuted([1, 2, 0]).madeContiguous().floats())
        // Already row-major: the same tensor, no node of its own.
        XCTAssertTrue(leaf.contiguous().isLeaf)
    }

    func testJoinsAndSplits() {
        let y = sample([2, 2, 4], seed: 13)
        checkGradients([x, y]) { concat([$0[0], $0[1]], dim: 1) }
        checkGradients([x, x]) { stack([$0[0], $0[1]], dim: 0) }
        checkGradients([x]) { input in
            let parts = input[0].split([1, 3], dim: 2)
            return parts[0] * parts[1].sum(dims: [2], keepDim: true)
        }
        // A dimension counted from the end, its pieces' gradients in separate buffers (not one tiled buffer).
        checkGradients([x]) { input in
            let halves = input[0].chunk(2, dim: -1)
            return halves[0] * halves[1] * 2
        }
    }

    func testReductions() {
        checkGradients([x]) { $0[0].sum() }
        checkGradients([x]) { $0[0].sum(dims: [0, 2]) }
        checkGradients([x]) { $0[0].mean(dims: [1], keepDim: true) }
        checkGradients([x]) { $0[0].max(dim: 2) }
        checkGradients([x]) { $0[0].max(dim: 0, keepDim: true) }
    }

    func testReductionValues() {
        let t = Tensor(shape: [2, 3], values: [1, 5, 3, 4, 2, 6])
        XCTAssertEqual(t.sum(dims: [1]).floats(), [9, 12])
        XCTAssertEqual(t.mean(dims: [0]).floats(), [2.5, 3.5, 4.5])
        XCTAssertEqual(t.max(dim: 1).floats(), [5, 6])
        XCTAssertEqual(t.argmax(dim: 1).ints(), [1, 2])
        XCTAssertEqual(t.sum().item(), 21)
    }

    func testMatmulShapesAndGradients() {
        let a = sample([3, 5], seed: 14), b = sample([5, 2], seed: 15)
        checkGradients([a, b]) { $0[0].matmul($0[1]) }
        checkGradients([sample([2, 3, 5], seed: 16), b]) { $0[0].matmul($0[1]) }
        // A weight shared by every batch (a linear layer: x W^T), its gradient folded into one product.
        checkGradients([sample([2, 2, 3, 5], seed: 18), sample([4, 5], seed: 19)]) { $0[0].matmul($0[1].transpose(0, 1)) }
        checkGradients([a, sample([2, 2, 5], seed: 17)]) { $0[0].matmul($0[1].transpose(-1, -2)) }
        let m = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        XCTAssertEqual(m.matmul(m).floats(), [7, 10, 15, 22])
        XCTAssertEqual(m.transpose(0, 1).matmul(m).floats(), [10, 14, 14, 20])
    }

    /// Piece gradients that are exactly the slices of one buffer (as flash attention returns them for a
    /// fused QKV projection) come back as that buffer, no copy; anything else is not taken for one.
    func testSplitBackwardTakesTiledGradientsAsTheyStand() {
        let buffer = Tensor(shape: [2, 6], values: (0..<12).map(Float.init))
        let pieces = [buffer.narrowed(1, start: 0, length: 3), buffer.narrowed(1, start: 3, length: 2), buffer.narrowed(1, start: 5, length: 1)]
        let full = Tensor.tiledBy(pieces, fullShape: [2, 6], dim: 1, starts: [0, 3, 5])
        XCTAssertTrue(full?.storage === buffer.storage)
        XCTAssertEqual(full?.floats(), buffer.floats())
        XCTAssertNil(Tensor.tiledBy([pieces[1], pieces[0], pieces[2]], fullShape: [2, 6], dim: 1, starts: [0, 3, 5]), "out of order")
        XCTAssertNil(Tensor.tiledBy([pieces[0], pieces[1].madeContiguous(), pieces[2]], fullShape: [2, 6], dim: 1, starts: [0, 3, 5]),
                     "another buffer")

        var x = Tensor(shape: [2, 6], values: (0..<12).map { Float($0) / 3 })
        x.requiresGrad = true
        let parts = x.split([3, 2, 1], dim: 1)
        (parts[0] * 2 + parts[1].sum() + parts[2] * 3).sum().backward()
        XCTAssertEqual(x.grad?.floats(), [2, 2, 2, 6, 6, 9, 2, 2, 2, 6, 6, 9], "each piece broadcast over 6 terms or 3 columns")
    }
}
