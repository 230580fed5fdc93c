import XCTest
import MegatronTensor
@testable import MegatronAutograd

final class NeuralGradientTests: XCTestCase {
    let x = sample([3, 5], seed: 21)

    func testSoftmaxFamily() {
        checkGradients([x]) { Functional.softmax($0[0]) }
        checkGradients([x]) { Functional.logSoftmax($0[0]) }
        let rowSums = Functional.softmax(x).sum(dims: [1]).floats()
        for s in rowSums { XCTAssertEqual(s, 1, accuracy: 1e-6) }
    }

    func testNorms() {
        let w = sample([5], seed: 22), b = sample([5], seed: 23)
        checkGradients([x, w, b]) { Functional.layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        checkGradients([x]) { Functional.layerNorm($0[0], weight: nil, bias: nil) }
        checkGradients([x, w]) { Functional.rmsNorm($0[0], weight: $0[1]) }
        let y = Functional.layerNorm(Tensor(shape: [1, 4], values: [1, 2, 3, 4]), weight: nil, bias: nil, epsilon: 0)
        let expected: [Float] = [-1.341_640_8, -0.447_213_6, 0.447_213_6, 1.341_640_8]
        for (v, e) in zip(y.floats(), expected) { XCTAssertEqual(v, e, accuracy: 1e-5) }
        let r = Functional.rmsNorm(Tensor(shape: [1, 2], values: [3, 4]), weight: nil, epsilon: 0)
        XCTAssertEqual(r.floats()[1], 4 / (12.5 as Float).squareRoot(), accuracy: 1e-6)
    }

    func testActivationsOfTheMLP() {
        checkGradients([sample([2, 6], seed: 24)]) { Functional.swiglu($0[0]) }
        checkGradients([x]) { Functional.gelu($0[0]) }
    }

    func testLinearOverBatchedTokens() {
        let x = sample([2, 3, 5], seed: 40), w = sample([4, 5], seed: 41), b = sample([4], seed: 42)
        checkGradients([x, w, b]) { Functional.linear($0[0], weight: $0[1], bias: $0[2]) }
        checkGradients([x, w]) { Functional.linear($0[0], weight: $0[1], bias: nil) }
    }

    func testEmbeddingAccumulatesRepeatedIds() {
        let table = sample([4, 3], seed: 25)
        let ids = Tensor(shape: [2, 3], ints: [1, 3, 1, 0, 1, 2])
        checkGradients([table]) { Functional.embedding(ids, weight: $0[0]) }
        var w = table
        w.requiresGrad = true
        Functional.embedding(ids, weight: w).sum().backward()
        XCTAssertEqual(w.grad!.floats(), [1, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1])
    }

    func testCrossEntropyMatchesItsDefinition() {
        let labels = Tensor(shape: [3], ints: [4, -100, 0])
        checkGradients([x]) { Functional.crossEntropy($0[0], labels: labels) }
        checkGradients([x]) { Functional.crossEntropy($0[0], labels: labels, labelSmoothing: 0.1) }
        let loss = Functional.crossEntropy(x, labels: labels, labelSmoothing: 0.1).floats()
        let logp = Functional.logSoftmax(x).floats()
        let smoothed0 = 0.9 * -logp[4] + 0.1 * -(logp[0..<5].reduce(0, +) / 5)
        XCTAssertEqual(loss[0], smoothed0, accuracy: 1e-5)
        XCTAssertEqual(loss[1], 0, "ignored label")
        XCTAssertEqual(Functional.crossEntropy(x, labels: labels).floats()[2], -logp[10], accuracy: 1e-5)
    }

    func testDropoutIsRepeatableAndUnbiased() {
        let ones = Tensor.ones([10_000])
        let y1 = Functional.dropout(ones, p: 0.25, generator: PhiloxGenerator(seed: 5)).floats()
        let y2 = Functional.dropout(ones, p: 0.25, generator: PhiloxGenerator(seed: 5)).floats()
        XCTAssertEqual(y1, y2)
        XCTAssertEqual(y1.reduce(0, +) / 10_000, 1, accuracy: 0.03)
        XCTAssertEqual(Float(y1.filter { $0 == 0 }.count) / 10_000, 0.25, accuracy: 0.02)
        checkGradients([x]) { Functional.dropout($0[0], p: 0.3, generator: PhiloxGenerator(seed: 6)) }
    }

    func testIndexingOps() {
        let index = Tensor(shape: [3, 2], ints: [0, 4, 2, 2, 1, 3])
        checkGradients([x]) { Functional.gather($0[0], dim: 1, index: index) }
        let source = sample([3, 2], seed: 26)
        checkGradients([x, source]) { Functional.scatterAdd($0[0], dim: 1, index: index, source: $0[1]) }
        let rows = Tensor(shape: [4], ints: [2, 0, 2, 1])
        checkGradients([x, sample([4, 5], seed: 27)]) { Functional.indexAdd($0[0], dim: 0, index: rows, source: $0[1]) }
        checkGradients([x]) { Functional.topk($0[0], k: 2).values }
        let t = Functional.topk(Tensor(shape: [1, 4], values: [3, 9, 1, 9]), k: 3)
        XCTAssertEqual(t.values.floats(), [9, 9, 3])
        XCTAssertEqual(t.indices.ints(), [1, 3, 0])
    }
}
