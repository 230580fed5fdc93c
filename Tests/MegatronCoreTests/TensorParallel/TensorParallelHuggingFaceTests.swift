import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// Hugging Face checkpoints imported single-rank, split for tensor parallelism (vocabulary padded by
/// Megatron's rule) and run on thread ranks, against the transformers golden values of
/// scripts/fixtures/make_hf_golden.py: logits, loss and every merged parameter gradient.
final class TensorParallelHuggingFaceTests: XCTestCase {
    func fixture(_ arch: String) -> URL { HuggingFaceFixtures.directory(arch) }

    func testGPT2MatchesTransformersAtTP4WithSequenceParallelism() throws {
        try compare("gpt2", size: 4, sequenceParallel: true)
    }

    func testLlamaMatchesTransformersAtTP2() throws {
        try compare("llama", size: 2, sequenceParallel: false)
        try compare("llama", size: 2, sequenceParallel: true)
    }

    /// Qwen2's q/k/v biases split with their query groups; Qwen3's q/k norm weights duplicated on every rank.
    func testQwen2AndQwen3MatchTransformersAtTP2() throws {
        try compare("qwen2", size: 2, sequenceParallel: true)
        try compare("qwen3", size: 2, sequenceParallel: true)
    }

    /// Import, split over 2 ranks (vocabulary padded to 256), merge, export: the original weights come back.
    func testSplitMergeExportReproducesTheOriginalWeights() throws {
        for arch in ["gpt2", "llama", "qwen2", "qwen3"] {
            let target = FileManager.default.temporaryDirectory.appendingPathComponent("tp-hf-\(arch)-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: target) }
            let loaded = try HuggingFaceGPT.load(directory: fixture(arch))
            let padded = TensorParallelGroup.paddedVocabSize(loaded.vocabSize, tensorParallelSize: 2)
            let parts = try (0..<2).map { rank in
                try loaded.model.tensorParallelShard(
                    for: TensorParallelGroup(LayoutOnlyCommunicator(rank: rank, size: 2)), paddedVocabSize: padded)
            }
            let merged = try GPTModel.mergingTensorParallelShards(parts)
            XCTAssertEqual(merged.vocabSize, 256, arch)
            try HuggingFaceGPT.save(merged, vocabSize: loaded.vocabSize, to: target, preferring: loaded.architecture)
            let original = try SafeTensors.read(fixture(arch).appendingPathComponent("model.safetensors")).tensors
            let exported = try SafeTensors.read(target.appendingPathComponent("model.safetensors")).tensors
            XCTAssertEqual(Set(exported.keys), Set(original.keys), arch)
            for (name, t) in original {
                XCTAssertEqual(exported[name]?.shape, t.shape, "\(arch) \(name)")
                XCTAssertEqual(exported[name]?.floats(), t.floats(), "\(arch) \(name)")
            }
        }
    }

    func compare(_ arch: String, size: Int, sequenceParallel: Bool,
                 file: StaticString = #filePath, line: UInt = #line) throws {
        let directory = fixture(arch)
        let label = "\(arch) TP=\(size)\(sequenceParallel ? " +SP" : "")"
        let loaded = try HuggingFaceGPT.load(directory: directory)
        let golden = try SafeTensors.read(directory.appendingPathComponent("golden.safetensors")).tensors
        let (ids, labels, vocab) = (golden["input_ids"]!, golden["labels"]!, loaded.vocabSize)
        let padded = TensorParallelGroup.paddedVocabSize(vocab, tensorParallelSize: size)
        let ranks = try runRanks(size) { comm in
            let group = TensorParallelGroup(comm, sequenceParallel: sequenceParallel)
            let part = try loaded.model.tensorParallelShard(for: group, paddedVocabSize: padded)
            let logits = part(ids).narrow(-1, start: 0, length: vocab)
            let loss = Functional.crossEntropy(logits, labels: labels).mean()
            loss.backward()
            TensorParallelGradients.allReducePartial(part, group: group)
            let grads = Dictionary(uniqueKeysWithValues: part.namedParameters().map { ($0.0, $0.1.grad!) })
            return (logits: logits.detached(), loss: loss.item(), grads: grads, shardings: part.tensorParallelShardings())
        }
        for (rank, r) in ranks.enumerated() {
            XCTAssertEqual(r.loss, golden["loss"]!.item(), accuracy: 1e-5 * golden["loss"]!.item(), "\(label) rank \(rank) loss",
                           file: file, line: line)
            let worst = maxAbsDifference(r.logits, golden["logits"]!)
            XCTAssertLessThan(worst, 1e-4 * (golden["logits"]!.floats().map(abs).max() ?? 1), "\(label) rank \(rank) logits",
                              file: file, line: line)
        }
        var merged = try TensorParallelResharding.merge(ranks.map(\.grads), shardings: ranks[0].shardings)
        for name in ["embedding.word_embeddings.weight", "output_layer.weight"] where merged[name] != nil {
            XCTAssertEqual(merged[name]!.size(0), padded)
            merged[name] = merged[name]!.narrowed(0, start: 0, length: vocab).madeContiguous()
        }
        var hfGrads: [String: Tensor] = [:]
        for (name, g) in golden where name.hasPrefix("grad.") { hfGrads[String(name.dropFirst(5))] = g }
        let expected = try HuggingFaceGPT.megatronState(from: hfGrads, config: try HuggingFaceConfig.read(directory), source: "golden")
        XCTAssertEqual(Set(expected.keys), Set(merged.keys), file: file, line: line)
        for (name, want) in expected {
            let scale = want.floats().map(abs).max() ?? 1
            XCTAssertLessThan(maxAbsDifference(merged[name]!, want), 1e-4 * scale, "\(label) grad \(name)", file: file, line: line)
        }
    }
}
