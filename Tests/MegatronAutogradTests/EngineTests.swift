import XCTest
import MegatronTensor
@testable import MegatronAutograd

final class EngineTests: XCTestCase {
    func testGradientsAccumulateAcrossBackwardPasses() {
        var w = Tensor(shape: [2], values: [1, 2])
        w.requiresGrad = true
        (w * w).sum().backward()
        (w * 3).sum().backward()
        XCTAssertEqual(w.grad!.floats(), [5, 7])
    }

    func testSeedGradientAndSharedSubexpressions() {
        var x = Tensor(shape: [3], values: [1, 2, 3])
        x.requiresGrad = true
        let y = x * x
        let z = y + y * 2
        z.backward(gradient: Tensor(shape: [3], values: [1, 0, -1]))
        XCTAssertEqual(x.grad!.floats(), [6, 0, -18])
    }

    func testNoGradRecordsNothing() {
        var x = Tensor(shape: [2], values: [1, 2])
        x.requiresGrad = true
        let y = withoutGrad { x * 2 }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue((x * 2).requiresGrad)
    }

    func testGradReadyHooksFireOncePerPassWithTheFinalGradient() {
        var w = Tensor(shape: [2], values: [1, 1])
        w.requiresGrad = true
        var seen: [[Float]] = []
        w.onGradReady { seen.append($0.floats()) }
        let h = w * 2
        (h + h * w).sum().backward()
        XCTAssertEqual(seen, [[6, 6]], "d/dw sum(2w + 2w*w) = 2 + 4w")
    }

    func testCheckpointGivesTheSameGradientsAndReplaysDropout() {
        func run(checkpointed: Bool) -> ([Float], [Float], Float) {
            var x = sample([4, 6], seed: 31)
            var w = sample([6, 6], seed: 32)
            x.requiresGrad = true
            w.requiresGrad = true
            let rng = PhiloxGenerator(seed: 77)
            let body: ([Tensor]) -> [Tensor] = { inputs in
                [Functional.dropout(Functional.gelu(inputs[0].matmul(w)), p: 0.5, generator: rng)]
            }
            let y = checkpointed ? checkpoint([x], generators: [rng], body)[0] : body([x])[0]
            let loss = (y * y).sum()
            loss.backward()
            return (x.grad!.floats(), w.grad!.floats(), loss.item())
        }
        let plain = run(checkpointed: false), recomputed = run(checkpointed: true)
        XCTAssertEqual(plain.2, recomputed.2)
        XCTAssertEqual(plain.0, recomputed.0)
        XCTAssertEqual(plain.1, recomputed.1)
    }

    func testBackwardTwiceWithoutRetainingIsAnError() {
        var x = Tensor(shape: [1], values: [2])
        x.requiresGrad = true
        let y = (x * x).sum()
        y.backward(retainGraph: true)
        y.backward()
        XCTAssertEqual(x.grad!.floats(), [8])
    }
}
