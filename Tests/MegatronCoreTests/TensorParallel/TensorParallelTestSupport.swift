import XCTest
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// The two model families the tensor-parallel tests cover, small enough for CPU thread ranks.
enum TinyGPT {
    /// GPT-2 style: LayerNorm, GeLU, learned positions, biases, tied embeddings.
    static func gpt2() throws -> TransformerConfig {
        try TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 4, ffnHiddenSize: 64,
                              hiddenDropout: 0, attentionDropout: 0)
    }

    /// LLaMA style: RMSNorm, SwiGLU, RoPE, grouped-query attention (8 heads, 4 groups), no biases, untied.
    static func llama(qkLayernorm: Bool = false) throws -> TransformerConfig {
        try TransformerConfig(numLayers: 2, hiddenSize: 32, numAttentionHeads: 8, numQueryGroups: 4, ffnHiddenSize: 48,
                              normalization: .rmsNorm, gatedLinearUnit: true, activation: .silu, addBiasLinear: false,
                              qkLayernorm: qkLayernorm, hiddenDropout: 0, attentionDropout: 0,
                              positionEmbeddingType: .rope)
    }

    static let vocabSize = 64
    static let maxSequenceLength = 16

    static func model(_ config: TransformerConfig, untied: Bool, group: TensorParallelGroup = .single,
                      seed: UInt64 = 7) throws -> GPTModel {
        try GPTModel(config: config, vocabSize: vocabSize, maxSequenceLength: maxSequenceLength,
                     untieEmbeddingsAndOutputWeights: untied, seed: seed, tensorParallel: group)
    }

    /// Deterministic tokens `[batch, seq]` and next-token labels.
    static func batch(batch: Int = 2, seq: Int = 8) -> (tokens: Tensor, labels: Tensor) {
        let ids = (0..<(batch * (seq + 1))).map { ($0 * 37 + 11) % vocabSize }
        var tokens: [Int] = [], labels: [Int] = []
        for b in 0..<batch {
            let row = Array(ids[(b * (seq + 1))..<((b + 1) * (seq + 1))])
            tokens += row.dropLast()
            labels += row.dropFirst()
        }
        return (Tensor(shape: [batch, seq], ints: tokens), Tensor(shape: [batch, seq], ints: labels))
    }
}

/// A communicator that only reports a rank and a size: enough to build one rank's part of a model and
/// check its shapes and values without running any collective.
final class LayoutOnlyCommunicator: Communicator {
    let rank: Int
    let size: Int

    init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    private func unavailable(_ op: String) -> CommunicatorError {
        CommunicatorError(op, "LayoutOnlyCommunicator runs no collectives")
    }

    func allReduce(_ tensor: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork { throw unavailable("allReduce") }
    func allGather(_ input: Tensor, into output: Tensor) throws -> CollectiveWork { throw unavailable("allGather") }
    func reduceScatter(_ input: Tensor, into output: Tensor, op: MegatronParallel.ReduceOp) throws -> CollectiveWork {
        throw unavailable("reduceScatter")
    }
    func broadcast(_ tensor: Tensor, root: Int) throws -> CollectiveWork { throw unavailable("broadcast") }
    func send(_ tensor: Tensor, to peer: Int) throws -> CollectiveWork { throw unavailable("send") }
    func recv(into tensor: Tensor, from peer: Int) throws -> CollectiveWork { throw unavailable("recv") }
    func allToAll(_ input: Tensor, into output: Tensor) throws -> CollectiveWork { throw unavailable("allToAll") }
    func barrier() throws { throw unavailable("barrier") }
    func split(color: Int, key: Int) throws -> Communicator { throw unavailable("split") }
}

/// Runs `body` on `size` thread ranks (par-comm's in-process backend) and returns the results in rank order.
func runRanks<T>(_ size: Int, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
    try ThreadCommunicator.run(worldSize: size) { try body($0) }
}

/// Largest absolute difference between two tensors of the same shape.
func maxAbsDifference(_ a: Tensor, _ b: Tensor, file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.shape, b.shape, file: file, line: line)
    return zip(a.floats(), b.floats()).map { Swift.abs($0 - $1) }.max() ?? 0
}

/// Asserts two state dicts hold the same keys with values within `tolerance` (absolute, scaled by the
/// larger magnitude when above one).
func assertClose(_ a: [String: Tensor], _ b: [String: Tensor], tolerance: Float, _ context: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), context, file: file, line: line)
    for name in a.keys.sorted() {
        guard let x = a[name], let y = b[name] else { continue }
        let scale = Swift.max(1, x.floats().map(Swift.abs).max() ?? 0)
        let diff = maxAbsDifference(x, y, file: file, line: line)
        XCTAssertLessThanOrEqual(diff, tolerance * scale, "\(context): \(name) differs by \(diff)", file: file, line: line)
    }
}
