import XCTest
import MegatronAutograd
import MegatronParallel
import MegatronTensor
@testable import MegatronCore

/// Each mapping's forward and backward on thread ranks, the vocabulary-parallel pieces against their
/// single-rank counterparts, and where dropout masks agree or differ across ranks.
final class TensorParallelMappingTests: XCTestCase {
    /// `[2, 4, 6]` values that differ per rank (so sums and gathers are visible).
    static func input(rank: Int) -> Tensor {
        Tensor(shape: [2, 4, 6], values: (0..<48).map { Float($0 + 100 * rank) })
    }

    /// Forward output and the gradient of `sum(output * weights)` for `mapping` on each of `size` ranks.
    func run(_ size: Int, _ mapping: @escaping (Tensor, TensorParallelGroup) -> Tensor) throws -> [(out: Tensor, grad: Tensor)] {
        try runRanks(size) { comm in
            var x = Self.input(rank: comm.rank)
            x.requiresGrad = true
            let y = mapping(x, TensorParallelGroup(comm))
            (y * Self.gradWeights(y.shape, rank: comm.rank)).sum().backward()
            return (y.detached(), x.grad!)
        }
    }

    /// The weights of the summed output on `rank`: the output gradient each rank feeds backward.
    static func gradWeights(_ shape: [Int], rank: Int) -> Tensor {
        Tensor(shape: shape, values: (0..<Shape.elementCount(shape)).map { Float($0 % 7 + 10 * rank) })
    }

    func sum(_ tensors: [Tensor]) -> Tensor { tensors.dropFirst().reduce(tensors[0]) { Ops.binary($0, $1, .add) } }

    func testCopyAndReduceAreConjugate() throws {
        let copy = try run(2, TensorParallelMappings.copyToRegion)
        let allGrads = sum((0..<2).map { Self.gradWeights([2, 4, 6], rank: $0) })
        for (rank, r) in copy.enumerated() {
            XCTAssertEqual(r.out.floats(), Self.input(rank: rank).floats(), "identity forward")
            XCTAssertEqual(r.grad.floats(), allGrads.floats(), "all-reduce backward")
        }
        let reduce = try run(2, TensorParallelMappings.reduceFromRegion)
        let allInputs = sum((0..<2).map { Self.input(rank: $0) })
        for (rank, r) in reduce.enumerated() {
            XCTAssertEqual(r.out.floats(), allInputs.floats(), "all-reduce forward")
            XCTAssertEqual(r.grad.floats(), Self.gradWeights([2, 4, 6], rank: rank).floats(), "identity backward")
        }
    }

    func testScatterAndGatherAlongTheLastDimension() throws {
        let gather = try run(3, TensorParallelMappings.gatherFromRegion)
        let whole = concat((0..<3).map { Self.input(rank: $0) }, dim: 2)
        for (rank, r) in gather.enumerated() {
            XCTAssertEqual(r.out.shape, [2, 4, 18])
            XCTAssertEqual(r.out.floats(), whole.floats())
            let mine = Self.gradWeights([2, 4, 18], rank: rank).narrowed(2, start: 6 * rank, length: 6).madeContiguous()
            XCTAssertEqual(r.grad.floats(), mine.floats(), "backward keeps this rank's block")
        }
        let scatter = try run(3, TensorParallelMappings.scatterToRegion)
        for (rank, r) in scatter.enumerated() {
            XCTAssertEqual(r.out.floats(), Self.input(rank: rank).narrowed(2, start: 2 * rank, length: 2).madeContiguous().floats())
            let gathered = concat((0..<3).map { Self.gradWeights([2, 4, 2], rank: $0) }, dim: 2)
            XCTAssertEqual(r.grad.floats(), gathered.floats(), "backward all-gathers")
        }
    }

    /// The sequence dimension of `[batch, seq, hidden]` is 1.
    func testSequenceParallelMappingsWorkOnTheSequenceDimension() throws {
        let gather = try run(2, TensorParallelMappings.gatherFromSequenceParallelRegion)
        let allGradWeights = sum((0..<2).map { Self.gradWeights([2, 8, 6], rank: $0) })
        for (rank, r) in gather.enumerated() {
            XCTAssertEqual(r.out.floats(), concat((0..<2).map { Self.input(rank: $0) }, dim: 1).floats())
            XCTAssertEqual(r.grad.floats(), allGradWeights.narrowed(1, start: 4 * rank, length: 4).madeContiguous().floats(),
                           "backward reduce-scatters")
        }
        let reduceScatter = try run(2, TensorParallelMappings.reduceScatterToSequenceParallelRegion)
        let allInputs = sum((0..<2).map { Self.input(rank: $0) })
        for (rank, r) in reduceScatter.enumerated() {
            XCTAssertEqual(r.out.floats(), allInputs.narrowed(1, start: 2 * rank, length: 2).madeContiguous().floats())
            XCTAssertEqual(r.grad.floats(), concat((0..<2).map { Self.gradWeights([2, 2, 6], rank: $0) }, dim: 1).floats(),
                           "backward all-gathers")
        }
        let scatter = try run(2, TensorParallelMappings.scatterToSequenceParallelRegion)
        for (rank, r) in scatter.enumerated() {
            XCTAssertEqual(r.out.floats(), Self.input(rank: rank).narrowed(1, start: 2 * rank, length: 2).madeContiguous().floats())
            XCTAssertEqual(r.grad.floats(), concat((0..<2).map { Self.gradWeights([2, 2, 6], rank: $0) }, dim: 1).floats())
        }
    }

    /// With one sequence per batch the sequence blocks are contiguous and skip the transposing copies.
    func testSequenceParallelMappingsWithABatchOfOne() throws {
        let ranks = try runRanks(2) { comm in
            var x = Self.input(rank: comm.rank).narrowed(0, start: 1, length: 1).madeContiguous()   // [1, 4, 6]
            x.requiresGrad = true
            let group = TensorParallelGroup(comm)
            let gathered = TensorParallelMappings.gatherFromSequenceParallelRegion(x, group)
            let scattered = TensorParallelMappings.reduceScatterToSequenceParallelRegion(gathered, group)
            (scattered * Self.gradWeights(scattered.shape, rank: comm.rank)).sum().backward()
            return (gathered.detached(), scattered.detached(), x.grad!)
        }
        let inputs = (0..<2).map { Self.input(rank: $0).narrowed(0, start: 1, length: 1).madeContiguous() }
        let whole = concat(inputs, dim: 1)   // [1, 8, 6]
        for (rank, r) in ranks.enumerated() {
            XCTAssertEqual(r.0.floats(), whole.floats())
            XCTAssertEqual(r.1.floats(), Ops.binary(whole, Tensor(scalar: 2), .mul).narrowed(1, start: 4 * rank, length: 4)
                .madeContiguous().floats(), "reduce-scatter of the same whole sequence on both ranks")
            // Backward all-gathers both ranks' [1, 4, 6] weights, then reduce-scatters the two identical
            // gathered copies: twice this rank's own weights.
            let expected = Ops.binary(Self.gradWeights([1, 4, 6], rank: rank), Tensor(scalar: 2), .mul)
            XCTAssertEqual(r.2.floats(), expected.floats())
        }
    }

    /// Split logits over 2 and 4 ranks give the fused single-rank cross-entropy and its gradient slices.
    func testVocabParallelCrossEntropyMatchesPlain() throws {
        let vocab = 24
        var logits = Tensor.normal([3, 5, vocab], std: 3, generator: PhiloxGenerator(seed: 11))
        logits.requiresGrad = true
        let labels = Tensor(shape: [3, 5], ints: (0..<15).map { $0 == 6 ? -100 : ($0 * 5 + 3) % vocab })
        let weights = Tensor.uniform([3, 5], generator: PhiloxGenerator(seed: 12))
        let plain = Functional.crossEntropy(logits, labels: labels)
        (plain * weights).sum().backward()
        let plainGrad = logits.grad!
        for size in [2, 4] {
            let ranks = try runRanks(size) { comm in
                let width = vocab / size
                var local = logits.detached().narrowed(2, start: comm.rank * width, length: width).madeContiguous()
                local.requiresGrad = true
                let loss = VocabParallelCrossEntropy.loss(local, labels: labels, group: TensorParallelGroup(comm))
                (loss * weights).sum().backward()
                return (loss.detached(), local.grad!)
            }
            for (rank, r) in ranks.enumerated() {
                XCTAssertLessThan(maxAbsDifference(r.0, plain), 1e-5, "TP=\(size) rank \(rank) loss")
            }
            let grad = concat(ranks.map(\.1), dim: 2)
            XCTAssertLessThan(maxAbsDifference(grad, plainGrad), 1e-6, "TP=\(size) gradient")
        }
    }

    /// The vocabulary-parallel embedding sums to the plain lookup, and its slices' gradients to the plain one.
    func testVocabParallelEmbeddingMatchesPlain() throws {
        let whole = VocabParallelEmbedding(count: 16, dimension: 3, generator: PhiloxGenerator(seed: 5))
        let ids = Tensor(shape: [2, 4], ints: [0, 15, 7, 8, 3, 12, 4, 4])
        let weights = Tensor.uniform([2, 4, 3], generator: PhiloxGenerator(seed: 6))
        let reference = whole(ids)
        (reference * weights).sum().backward()
        for reduceScatter in [false, true] {
            let ranks = try runRanks(4) { comm in
                let part = VocabParallelEmbedding(count: 16, dimension: 3, group: TensorParallelGroup(comm),
                                                  generator: PhiloxGenerator(seed: 5))
                let out = part(ids, reduceScatter: reduceScatter)
                let mine = reduceScatter ? weights.narrowed(1, start: comm.rank, length: 1).madeContiguous() : weights
                (out * mine).sum().backward()
                return (out.detached(), part.weight.grad!)
            }
            let out = reduceScatter ? concat(ranks.map(\.0), dim: 1) : ranks[0].0
            XCTAssertLessThan(maxAbsDifference(out, reference), 1e-7, "reduceScatter \(reduceScatter)")
            XCTAssertLessThan(maxAbsDifference(concat(ranks.map(\.1), dim: 0), whole.weight.grad!), 1e-6)
        }
    }

    /// Dropout on split activations (attention) draws per-rank masks; on duplicated ones (hidden states
    /// without sequence parallelism) the same mask everywhere; under sequence parallelism per-rank masks.
    func testDropoutGeneratorsFollowWhatIsSplit() throws {
        let config = try TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32,
                                           hiddenDropout: 0.1, attentionDropout: 0.1)
        for sequenceParallel in [false, true] {
            let seeds = try runRanks(2) { comm -> [UInt64] in
                let model = try GPTModel(config: config, vocabSize: 32, maxSequenceLength: 8, seed: 100,
                                         tensorParallel: TensorParallelGroup(comm, sequenceParallel: sequenceParallel))
                let layer = model.decoder.layers[0]
                return [layer.attention!.attentionDropout.generator.seed, layer.hiddenDropout.generator.seed,
                        model.embeddingDropout.generator.seed]
            }
            XCTAssertEqual(seeds[0][0], 101 + 2718, "attention dropout: seed + 2718 + rank")
            XCTAssertEqual(seeds[1][0], 101 + 2718 + 1)
            if sequenceParallel {
                XCTAssertEqual(seeds.map { $0[1] }, [101 + 2718, 101 + 2719], "sequence-parallel hidden dropout")
                XCTAssertEqual(seeds.map { $0[2] }, [101 + 2718, 101 + 2719], "sequence-parallel embedding dropout")
            } else {
                XCTAssertEqual(seeds.map { $0[1] }, [101, 101], "duplicated hidden states share masks")
                XCTAssertEqual(seeds.map { $0[2] }, [101, 101])
            }
        }
    }

    /// With hidden dropout on (duplicated masks), a TP=2 model in training mode computes exactly what the
    /// single-rank model computes with the same seed, and its duplicated parameters' gradients agree.
    func testHiddenDropoutMasksAgreeWithTheSingleRankModel() throws {
        let config = try TransformerConfig(numLayers: 2, hiddenSize: 16, numAttentionHeads: 4, ffnHiddenSize: 32,
                                           hiddenDropout: 0.3, attentionDropout: 0)
        let (tokens, labels) = TinyGPT.batch()
        let whole = try GPTModel(config: config, vocabSize: TinyGPT.vocabSize, maxSequenceLength: 16, seed: 3, tensorParallel: .single)
        let reference = whole.loss(tokens: tokens, labels: labels).mean().item()
        let noDropout = withoutGrad { () -> Float in
            whole.eval()
            defer { whole.train() }
            return whole.loss(tokens: tokens, labels: labels).mean().item()
        }
        XCTAssertNotEqual(reference, noDropout, accuracy: 1e-4, "dropout is active")
        let losses = try runRanks(2) { comm in
            let part = try GPTModel(config: config, vocabSize: TinyGPT.vocabSize, maxSequenceLength: 16, seed: 3,
                                    tensorParallel: TensorParallelGroup(comm))
            return part.loss(tokens: tokens, labels: labels).mean().item()
        }
        for loss in losses { XCTAssertEqual(loss, reference, accuracy: 1e-6) }
    }
}
