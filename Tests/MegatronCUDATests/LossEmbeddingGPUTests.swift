import XCTest
@testable import MegatronCUDA
import MegatronTestSupport

/// Fused cross-entropy, embedding lookup and index-add against float64 CPU references.
final class LossEmbeddingGPUTests: XCTestCase {
    func testCrossEntropyWithIgnoreIndexAndLabelSmoothing() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 31)
        for type in KernelElementType.allCases {
            for (rows, vocabulary) in [(13, 1000), (6, 50), (3, 50304)] {
                for smoothing: Float in [0, 0.1] {
                    let label = "cross-entropy \(type) [\(rows), \(vocabulary)] eps \(smoothing)"
                    let logits = random.values(rows * vocabulary, type, -6, 6)
                    // Row 1 is ignored (-100); the others draw real labels, including the last class.
                    let labels: [Int64] = (0..<rows).map { row in
                        row == 1 ? -100 : row == 2 ? Int64(vocabulary - 1) : Int64(random.next() % UInt64(vocabulary))
                    }
                    let gradient = random.floats(rows, 0.5, 2)
                    let reference = Self.crossEntropy(logits, labels: labels, vocabulary: vocabulary, smoothing: Double(smoothing),
                                                      gradient: gradient.map(Double.init))
                    let dLogits = try gpu.upload(logits, as: type), dLabels = try gpu.upload(labels), dGrad = try gpu.upload(gradient)
                    let loss = try gpu.poisoned(rows), lse = try gpu.poisoned(rows)
                    let grad = try gpu.poisoned(rows * vocabulary, as: type)
                    defer { gpu.free(dLogits, dLabels, dGrad, loss, lse, grad) }
                    try nn.crossEntropyForward(loss: loss.address, logSumExp: lse.address, logits: dLogits.address,
                                               labels: dLabels.address, rows: rows, vocabulary: vocabulary, labelSmoothing: smoothing,
                                               type: type, stream: gpu.stream)
                    let losses = try gpu.download(loss, count: rows, as: .float32)
                    XCTAssertEqual(losses[1], 0, label + ": an ignored row has loss 0")
                    assertClose(losses, reference.loss, 1e-5, label + " loss")
                    assertClose(try gpu.download(lse, count: rows, as: .float32), reference.lse, 1e-5, label + " lse")

                    try nn.crossEntropyBackward(grad.address, gradient: dGrad.address, logits: dLogits.address,
                                                logSumExp: lse.address, labels: dLabels.address, rows: rows, vocabulary: vocabulary,
                                                labelSmoothing: smoothing, type: type, stream: gpu.stream)
                    let dlogits = try gpu.download(grad, count: rows * vocabulary, as: type)
                    XCTAssertTrue(dlogits[vocabulary..<2 * vocabulary].allSatisfy { $0 == 0 }, label + ": ignored row's gradient is 0")
                    assertClose(dlogits, reference.dlogits, type.tolerance, label + " dlogits")
                }
            }
        }
    }

    /// gradientStride 0 broadcasts one gradient (a mean-reduced loss); in place over the logits.
    func testCrossEntropyBackwardBroadcastGradientInPlace() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 32)
        let (rows, vocabulary) = (4, 256)
        let logits = random.values(rows * vocabulary, .float32, -3, 3)
        let labels: [Int64] = [3, 0, 255, 17]
        let reference = Self.crossEntropy(logits, labels: labels, vocabulary: vocabulary, smoothing: 0,
                                          gradient: [Double](repeating: 0.25, count: rows))
        let dLogits = try gpu.upload(logits), dLabels = try gpu.upload(labels), dGrad = try gpu.upload([Float(0.25)])
        let loss = try gpu.poisoned(rows), lse = try gpu.poisoned(rows)
        defer { gpu.free(dLogits, dLabels, dGrad, loss, lse) }
        try nn.crossEntropyForward(loss: loss.address, logSumExp: lse.address, logits: dLogits.address, labels: dLabels.address,
                                   rows: rows, vocabulary: vocabulary, type: .float32, stream: gpu.stream)
        try nn.crossEntropyBackward(dLogits.address, gradient: dGrad.address, gradientStride: 0, logits: dLogits.address,
                                    logSumExp: lse.address, labels: dLabels.address, rows: rows, vocabulary: vocabulary,
                                    type: .float32, stream: gpu.stream)
        assertClose(try gpu.download(dLogits, count: rows * vocabulary, as: .float32), reference.dlogits, 1e-5, "in-place dlogits")
    }

    func testCrossEntropyOutOfRangeLabelGivesNaN() throws {
        let (gpu, nn) = try NeuralFixture.require()
        let dLogits = try gpu.upload([Float](repeating: 0, count: 16)), dLabels = try gpu.upload([Int64(16), 2])
        let loss = try gpu.poisoned(2), lse = try gpu.poisoned(2)
        defer { gpu.free(dLogits, dLabels, loss, lse) }
        try nn.crossEntropyForward(loss: loss.address, logSumExp: lse.address, logits: dLogits.address, labels: dLabels.address,
                                   rows: 2, vocabulary: 8, type: .float32, stream: gpu.stream)
        let losses = try gpu.download(loss, count: 2, as: .float32)
        XCTAssertTrue(losses[0].isNaN)
        XCTAssertEqual(Double(losses[1]), log(8.0), accuracy: 1e-6)
    }

    func testEmbeddingForwardGathersRowsAndFlagsBadIds() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 33)
        for type in KernelElementType.allCases {
            for width in [64, 13] {   // vectorized and scalar
                let vocabulary = 50, ids: [Int64] = [3, 49, 0, 3, 7, 50, -1]
                let table = random.values(vocabulary * width, type)
                let dTable = try gpu.upload(table, as: type), dIds = try gpu.upload(ids)
                let out = try gpu.poisoned(ids.count * width, as: type)
                defer { gpu.free(dTable, dIds, out) }
                try nn.embeddingForward(out.address, table: dTable.address, ids: dIds.address, tokens: ids.count,
                                        vocabulary: vocabulary, width: width, type: type, stream: gpu.stream)
                let rows = try gpu.download(out, count: ids.count * width, as: type)
                for (token, id) in ids.enumerated() {
                    let row = Array(rows[token * width..<(token + 1) * width])
                    if id >= 0 && id < vocabulary {
                        XCTAssertEqual(row, Array(table[Int(id) * width..<(Int(id) + 1) * width]), "\(type) width \(width) token \(token)")
                    } else {
                        XCTAssertTrue(row.allSatisfy(\.isNaN), "\(type): id \(id) out of range gives NaN")
                    }
                }
            }
        }
    }

    /// Repeated ids sum in token order; accumulate adds to what is there, otherwise unnamed rows become 0.
    func testIndexAddAndEmbeddingBackward() throws {
        let (gpu, nn) = try NeuralFixture.require()
        var random = SplitMix64(seed: 34)
        for type in KernelElementType.allCases {
            for (tokens, rows, width) in [(3000, 40, 96), (9, 5, 13)] {
                let ids: [Int64] = (0..<tokens).map { $0 % 7 == 0 ? -1 : Int64(random.next() % UInt64(rows - 1)) }   // last row never named
                let source = random.values(tokens * width, type), initial = random.values(rows * width, type)
                for accumulate in [false, true] {
                    let label = "index add \(type) tokens \(tokens) width \(width) accumulate \(accumulate)"
                    var expected = accumulate ? initial.map(Double.init) : [Double](repeating: 0, count: rows * width)
                    for (token, id) in ids.enumerated() where id >= 0 {
                        for c in 0..<width { expected[Int(id) * width + c] += Double(source[token * width + c]) }
                    }
                    let out = try gpu.upload(initial, as: type), dSource = try gpu.upload(source, as: type), dIds = try gpu.upload(ids)
                    defer { gpu.free(out, dSource, dIds) }
                    try nn.embeddingBackward(tableGradient: out.address, gradient: dSource.address, ids: dIds.address, tokens: tokens,
                                             vocabulary: rows, width: width, accumulate: accumulate, type: type, stream: gpu.stream)
                    let result = try gpu.download(out, count: rows * width, as: type)
                    assertClose(result, expected, type.tolerance, label)
                    if !accumulate { XCTAssertTrue(result[(rows - 1) * width..<rows * width].allSatisfy { $0 == 0 }, label) }
                    // Deterministic: the same call again gives the same bits.
                    if type == .float32 {
                        try gpu.staging.copyToDevice(initial, to: out.address, stream: gpu.stream)
                        try nn.indexAdd(out.address, source: dSource.address, ids: dIds.address, tokens: tokens, rows: rows, width: width,
                                        accumulate: accumulate, type: type, stream: gpu.stream)
                        XCTAssertEqual(try gpu.download(out, count: rows * width, as: type).map(\.bitPattern), result.map(\.bitPattern))
                    }
                }
            }
        }
    }

    static func crossEntropy(_ logits: [Float], labels: [Int64], vocabulary: Int, smoothing: Double, gradient: [Double])
        -> (loss: [Double], lse: [Double], dlogits: [Double])
    {
        var result = (loss: [Double](), lse: [Double](), dlogits: [Double]())
        for (row, label) in labels.enumerated() {
            let x = logits[row * vocabulary..<(row + 1) * vocabulary].map(Double.init)
            let max = x.max()!
            let lse = max + log(x.reduce(0) { $0 + exp($1 - max) })
            result.lse.append(lse)
            guard label >= 0 else {
                result.loss.append(0)
                result.dlogits += [Double](repeating: 0, count: vocabulary)
                continue
            }
            let mean = x.reduce(0, +) / Double(vocabulary)
            result.loss.append(lse - (1 - smoothing) * x[Int(label)] - smoothing * mean)
            for (c, v) in x.enumerated() {
                let target = (c == Int(label) ? 1 - smoothing : 0) + smoothing / Double(vocabulary)
                result.dlogits.append(gradient[row] * (exp(v - lse) - target))
            }
        }
        return result
    }
}
