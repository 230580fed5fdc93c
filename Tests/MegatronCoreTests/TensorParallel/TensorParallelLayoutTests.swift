import Foundation
import XCTest
import MegatronAutograd
import MegatronTensor
@testable import MegatronCore

/// Tensor-parallel layouts that need no collective: sharding rules, split / merge of state dicts, the
/// parts a seed builds for each rank, and the errors for layouts that cannot split.
final class TensorParallelLayoutTests: XCTestCase {
    func group(_ rank: Int, _ size: Int, sequenceParallel: Bool = false) -> TensorParallelGroup {
        TensorParallelGroup(LayoutOnlyCommunicator(rank: rank, size: size), sequenceParallel: sequenceParallel)
    }

    func testShardingsFollowMegatronPartitionDims() throws {
        let gpt2 = try TinyGPT.model(TinyGPT.gpt2(), untied: false).tensorParallelShardings()
        XCTAssertEqual(gpt2["embedding.word_embeddings.weight"], .split(dim: 0))
        XCTAssertEqual(gpt2["embedding.position_embeddings.weight"], .duplicated)
        XCTAssertEqual(gpt2["decoder.layers.0.self_attention.linear_qkv.weight"], .split(dim: 0))
        XCTAssertEqual(gpt2["decoder.layers.0.self_attention.linear_qkv.bias"], .split(dim: 0))
        XCTAssertEqual(gpt2["decoder.layers.0.self_attention.linear_proj.weight"], .split(dim: 1))
        XCTAssertEqual(gpt2["decoder.layers.0.self_attention.linear_proj.bias"], .duplicated)
        XCTAssertEqual(gpt2["decoder.layers.1.mlp.linear_fc1.weight"], .split(dim: 0))
        XCTAssertEqual(gpt2["decoder.layers.1.mlp.linear_fc2.weight"], .split(dim: 1))
        XCTAssertEqual(gpt2["decoder.layers.1.mlp.linear_fc2.bias"], .duplicated)
        XCTAssertEqual(gpt2["decoder.layers.1.input_layernorm.weight"], .duplicated)
        XCTAssertEqual(gpt2["decoder.final_layernorm.bias"], .duplicated)
        let llama = try TinyGPT.model(TinyGPT.llama(), untied: true).tensorParallelShardings()
        XCTAssertEqual(llama["decoder.layers.0.mlp.linear_fc1.weight"], .splitHalves(dim: 0))
        XCTAssertEqual(llama["output_layer.weight"], .split(dim: 0))
    }

    func testSplitThenMergeIsIdentity() throws {
        for (config, untied) in [(try TinyGPT.gpt2(), false), (try TinyGPT.llama(), true)] {
            let model = try TinyGPT.model(config, untied: untied)
            let state = model.stateDict(), shardings = model.tensorParallelShardings()
            for size in [1, 2, 4] {
                let shards = try TensorParallelResharding.split(state, shardings: shardings, size: size)
                XCTAssertEqual(shards.count, size)
                let merged = try TensorParallelResharding.merge(shards, shardings: shardings)
                assertClose(merged, state, tolerance: 0, "TP=\(size) round trip")
            }
        }
    }

    /// Rank r's fused QKV rows are whole query groups r*g/tp..<(r+1)*g/tp, each [its query heads, key, value].
    func testFusedQKVShardHoldsWholeQueryGroups() throws {
        let config = try TinyGPT.llama()   // 8 heads, 4 groups, kv channels 4: 2 query heads + k + v = 16 rows a group
        let model = try TinyGPT.model(config, untied: true)
        let full = model.decoder.layers[0].attention!.linearQKV.weight
        let rowsPerGroup = (config.numAttentionHeads / config.numQueryGroups + 2) * config.kvChannels
        let shards = try TensorParallelResharding.split(model.stateDict(), shardings: model.tensorParallelShardings(), size: 2)
        let rank1 = shards[1]["decoder.layers.0.self_attention.linear_qkv.weight"]!
        XCTAssertEqual(rank1.shape, [2 * rowsPerGroup, config.hiddenSize])
        XCTAssertEqual(rank1.floats(), full.narrowed(0, start: 2 * rowsPerGroup, length: 2 * rowsPerGroup).madeContiguous().floats())
    }

    /// SwiGLU: rank r holds [gate block r; up block r], as Megatron's linear_fc1 shards do.
    func testSwiGLUShardHoldsMatchingGateAndUpBlocks() throws {
        let full = Tensor(shape: [8, 1], values: (0..<8).map(Float.init))   // gate rows 0-3, up rows 4-7
        let sharding = TensorParallelSharding.splitHalves(dim: 0)
        XCTAssertEqual(try sharding.shard(full, rank: 0, size: 2).floats(), [0, 1, 4, 5])
        XCTAssertEqual(try sharding.shard(full, rank: 1, size: 2).floats(), [2, 3, 6, 7])
        XCTAssertEqual(try sharding.shard(full, rank: 3, size: 4).floats(), [3, 7])
        let shards = try (0..<4).map { try sharding.shard(full, rank: $0, size: 4) }
        XCTAssertEqual(try sharding.merge(shards).floats(), full.floats())
    }

    /// The same seed builds, on each rank, exactly that rank's slice of the single-rank model.
    func testSeedBuildsTheSameModelForEveryGroupSize() throws {
        for (config, untied) in [(try TinyGPT.gpt2(), false), (try TinyGPT.llama(), true)] {
            let whole = try TinyGPT.model(config, untied: untied)
            for size in [2, 4] {
                let shards = try TensorParallelResharding.split(whole.stateDict(), shardings: whole.tensorParallelShardings(),
                                                                size: size)
                for rank in 0..<size {
                    let part = try TinyGPT.model(config, untied: untied, group: group(rank, size))
                    assertClose(part.stateDict(), shards[rank], tolerance: 0, "TP=\(size) rank \(rank)")
                    let viaShard = try whole.tensorParallelShard(for: group(rank, size), seed: 7)
                    assertClose(viaShard.stateDict(), shards[rank], tolerance: 0, "tensorParallelShard TP=\(size) rank \(rank)")
                }
            }
        }
    }

    func testMergingPartsRebuildsTheSingleRankModel() throws {
        let config = try TinyGPT.llama()
        let whole = try TinyGPT.model(config, untied: true)
        let parts = try (0..<4).map { try whole.tensorParallelShard(for: group($0, 4)) }
        let merged = try GPTModel.mergingTensorParallelShards(parts)
        XCTAssertEqual(merged.tensorParallel.size, 1)
        assertClose(merged.stateDict(), whole.stateDict(), tolerance: 0, "merge of 4 parts")
    }

    func testShardingPadsTheVocabularyWithZeroRows() throws {
        let whole = try TinyGPT.model(TinyGPT.gpt2(), untied: false)
        let padded = TensorParallelGroup.paddedVocabSize(TinyGPT.vocabSize, makeVocabSizeDivisibleBy: 48, tensorParallelSize: 2)
        XCTAssertEqual(padded, 96)
        let last = try whole.tensorParallelShard(for: group(1, 2), paddedVocabSize: padded)
        XCTAssertEqual(last.vocabSize, 96)
        XCTAssertEqual(last.wordEmbeddings!.weight.shape, [48, 32])
        XCTAssertEqual(last.wordEmbeddings!.vocabStart, 48)
        let rows = last.wordEmbeddings!.weight.floats()
        XCTAssertEqual(Array(rows[(16 * 32)...]), [Float](repeating: 0, count: 32 * 32), "rows 64..<96 are padding")
        XCTAssertEqual(Array(rows[..<(16 * 32)]),
                       whole.wordEmbeddings!.weight.narrowed(0, start: 48, length: 16).madeContiguous().floats())
    }

    func testSavingOneRanksPartIsRefused() throws {
        let part = try TinyGPT.model(TinyGPT.llama(), untied: true, group: group(1, 2))
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("tp-refused-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: target) }
        XCTAssertThrowsError(try HuggingFaceGPT.save(part, vocabSize: 64, to: target)) { error in
            XCTAssertEqual((error as? CheckpointError)?.description,
                           "Hugging Face export needs the whole model, but this is rank 1 of a 2-way tensor-parallel split; "
                           + "merge it first (TensorParallelResharding.gather or GPTModel.mergingTensorParallelShards)")
        }
        XCTAssertThrowsError(try GPTCheckpoint.save(part, vocabSize: 64, to: CheckpointDirectory(root: target)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.path), "nothing written")
    }

    func testMegatronVocabPaddingRule() {
        XCTAssertEqual(TensorParallelGroup.paddedVocabSize(50257, tensorParallelSize: 1), 50304)
        XCTAssertEqual(TensorParallelGroup.paddedVocabSize(50257, tensorParallelSize: 2), 50432)
        XCTAssertEqual(TensorParallelGroup.paddedVocabSize(50257, tensorParallelSize: 8), 51200)
        XCTAssertEqual(TensorParallelGroup.paddedVocabSize(32000, tensorParallelSize: 4), 32256)
    }

    func testImpossibleLayoutsAreRejectedWithTheReason() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body() } catch let error as ConfigError { return error.description } catch { return "\(error)" }
            return "no error"
        }
        let heads = message { try TinyGPT.model(TinyGPT.gpt2(), untied: false, group: self.group(0, 8)) }
        XCTAssertEqual(heads, "num_attention_heads (4) must be divisible by the tensor-parallel size (8)")
        let gqa = try TransformerConfig(numLayers: 1, hiddenSize: 32, numAttentionHeads: 8, numQueryGroups: 2,
                                        ffnHiddenSize: 64, hiddenDropout: 0, attentionDropout: 0)
        XCTAssertEqual(message { try TinyGPT.model(gqa, untied: false, group: self.group(0, 4)) },
                       "num_query_groups (2) must be divisible by the tensor-parallel size (4)")
        let ffn = try TransformerConfig(numLayers: 1, hiddenSize: 32, numAttentionHeads: 4, ffnHiddenSize: 30,
                                        hiddenDropout: 0, attentionDropout: 0)
        XCTAssertEqual(message { try TinyGPT.model(ffn, untied: false, group: self.group(0, 4)) },
                       "ffn_hidden_size (30) must be divisible by the tensor-parallel size (4)")
        let vocab = message {
            try GPTModel(config: TinyGPT.gpt2(), vocabSize: 50257, maxSequenceLength: 8, tensorParallel: self.group(0, 2))
        }
        XCTAssertEqual(vocab, "padded vocab size (50257) must be divisible by the tensor-parallel size (2); Megatron pads "
            + "the vocabulary to a multiple of make_vocab_size_divisible_by x TP, e.g. 50432")
        let whole = try TinyGPT.model(TinyGPT.gpt2(), untied: false)
        XCTAssertEqual(message { try whole.tensorParallelShard(for: self.group(0, 2), paddedVocabSize: 32) },
                       "padded vocab size 32 is smaller than the model's vocabulary 64")
        XCTAssertEqual(message { try TensorParallelResharding.shard(["x": Tensor.zeros([3])], shardings: ["x": .split(dim: 0)],
                                                                     rank: 0, size: 2) },
                       "x: a parameter of shape [3] does not split into 2 equal blocks along dim 0")
        XCTAssertEqual(message { try TensorParallelResharding.shard(["y": Tensor.zeros([4])], shardings: [:], rank: 0, size: 2) },
                       "no tensor-parallel layout is known for 'y'")
    }

    /// Which duplicated parameters need their gradients summed over the group (Megatron's rule).
    func testPartialGradientParameters() throws {
        let config = try TinyGPT.llama(qkLayernorm: true)
        let names = { (g: TensorParallelGroup) throws -> [String] in
            try TinyGPT.model(config, untied: true, group: g).parametersWithPartialGradients().map(\.0)
        }
        XCTAssertEqual(try names(.single), [])
        XCTAssertEqual(try names(group(0, 2)), [
            "decoder.layers.0.self_attention.q_layernorm.weight", "decoder.layers.0.self_attention.k_layernorm.weight",
            "decoder.layers.1.self_attention.q_layernorm.weight", "decoder.layers.1.self_attention.k_layernorm.weight",
        ])
        let sequenceParallel = try TinyGPT.model(TinyGPT.gpt2(), untied: false, group: group(1, 2, sequenceParallel: true))
            .parametersWithPartialGradients().map(\.0)
        XCTAssertEqual(sequenceParallel.filter { $0.hasPrefix("decoder.layers.0.") }, [
            "decoder.layers.0.input_layernorm.weight", "decoder.layers.0.input_layernorm.bias",
            "decoder.layers.0.self_attention.linear_proj.bias",
            "decoder.layers.0.pre_mlp_layernorm.weight", "decoder.layers.0.pre_mlp_layernorm.bias",
            "decoder.layers.0.mlp.linear_fc2.bias",
        ])
        XCTAssertEqual(sequenceParallel.suffix(2), ["decoder.final_layernorm.weight", "decoder.final_layernorm.bias"])
    }

    /// Attributes set where parameters are created: the tied word embeddings are shared (the untied ones
    /// not), Gated DeltaNet's per-head `out_norm` has partial gradients on two ranks, and its `A_log` follows
    /// the value heads.
    func testParameterAttributesAreSetWhereParametersAreCreated() throws {
        let attributes = { (model: GPTModel) in
            Dictionary(uniqueKeysWithValues: model.namedParameterAttributes().map { ($0.name, $0.attributes) })
        }
        XCTAssertEqual(attributes(try TinyGPT.model(TinyGPT.gpt2(), untied: false))["embedding.word_embeddings.weight"]?.shared, true)
        let untied = attributes(try TinyGPT.model(TinyGPT.llama(), untied: true))
        XCTAssertEqual(untied.filter { $0.value.shared }.keys.sorted(), [])
        var config = try TinyGPT.llama()
        config.gatedDeltaNet = GatedDeltaNetConfig(layers: [true, false], convKernelDim: 3, keyHeadDim: 4, valueHeadDim: 6,
                                                   numKeyHeads: 4, numValueHeads: 8)
        let hybrid = attributes(try TinyGPT.model(config, untied: true, group: group(0, 2)))
        XCTAssertEqual(hybrid.filter { $0.value.partialGradient }.keys.sorted(), ["decoder.layers.0.self_attention.out_norm.weight"])
        XCTAssertEqual(hybrid["decoder.layers.0.self_attention.A_log"]?.tensorParallel, .split(dim: 0))
        XCTAssertEqual(hybrid["decoder.layers.0.self_attention.conv1d.weight"]?.tensorParallel,
                       .splitSections(dim: 0, lengths: [16, 16, 48]))
        XCTAssertFalse(hybrid.values.contains { $0.expert }, "no layer creates expert parameters yet")
    }

    /// On a single rank the vocabulary-parallel loss is the fused cross-entropy, values and gradients.
    func testVocabParallelCrossEntropyMatchesPlainOnOneRank() throws {
        var logits = Tensor.normal([3, 5, 16], std: 2, generator: PhiloxGenerator(seed: 3))
        logits.requiresGrad = true
        let labels = Tensor(shape: [3, 5], ints: (0..<15).map { $0 == 4 ? -100 : ($0 * 7) % 16 })
        let weights = Tensor.uniform([3, 5], generator: PhiloxGenerator(seed: 4))
        let plain = Functional.crossEntropy(logits, labels: labels)
        (plain * weights).sum().backward()
        let plainGrad = logits.grad!
        logits.grad = nil
        let parallel = VocabParallelCrossEntropy.loss(logits, labels: labels, group: .single)
        (parallel * weights).sum().backward()
        XCTAssertLessThan(maxAbsDifference(parallel, plain), 1e-5)
        XCTAssertEqual(parallel.floats()[4], 0, "ignored position")
        XCTAssertLessThan(maxAbsDifference(logits.grad!, plainGrad), 1e-6)
    }
}
