import Foundation
import MegatronCore
import MegatronTensor
import MegatronTestSupport
import XCTest

/// Megatron-LM's own checkpoints of a tiny GPTModel (scripts/fixtures/make_megatron_checkpoints.py: Megatron Core's
/// `dist_checkpointing.save` and its legacy torch.save layout, on CPU, also as pipeline stages and tensor-parallel ranks) load here with
/// Megatron's logits; ours round-trip bit for bit. (The same script's `check` mode loads ours with Megatron's `dist_checkpointing.load`.)
final class MegatronCheckpointFormatTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/megatron")

    struct Golden: Decodable {
        var tokens: [[Int]]
        var shape: [Int]
        var logits: [Float]
    }

    static func golden(in root: URL = fixtures) throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: root.appendingPathComponent("logits.json")))
    }

    static func logits(_ model: GPTModel, _ golden: Golden) -> [Float] {
        let ids = Tensor(shape: [golden.tokens.count, golden.tokens[0].count], ints: golden.tokens.flatMap { $0 })
        return withoutGrad { model(ids) }.floats()
    }

    @discardableResult
    func assertMegatronLogits(_ format: String, directory: String? = nil, file: StaticString = #filePath, line: UInt = #line)
        throws -> LoadedCheckpoint {
        let store = CheckpointDirectory(root: Self.fixtures.appendingPathComponent(directory ?? format))
        let checkpoint = try XCTUnwrap(try store.loadLatest())
        XCTAssertEqual(checkpoint.writtenByMegatron, format, file: file, line: line)
        XCTAssertEqual(checkpoint.iteration, 7, file: file, line: line)
        XCTAssertEqual(try checkpoint.metadata.manifest().consumedSamples, 56, file: file, line: line)
        let loaded = try GPTCheckpoint.load(from: store)
        XCTAssertEqual(loaded.model.config.numLayers, 2, file: file, line: line)
        XCTAssertEqual(loaded.model.config.activation, .geluExact, "bias_gelu_fusion=False is F.gelu", file: file, line: line)
        let golden = try Self.golden()
        assertScaledClose(Self.logits(loaded.model, golden), golden.logits, tolerance: 2e-6, "\(format) logits", file: file, line: line)
        return checkpoint
    }

    func testMegatronTorchDistCheckpointGivesMegatronsLogits() throws { try assertMegatronLogits("torch_dist") }

    func testMegatronLegacyTorchCheckpointGivesMegatronsLogits() throws { try assertMegatronLogits("torch") }

    /// The same model saved by Megatron as two pipeline stages (`mp_rank_00_000`, `mp_rank_00_001`, each numbering
    /// its layers from 0, the last holding the tied output weight's copy) reads as the one-stage checkpoint: the
    /// same names and every tensor bit for bit.
    func testMegatronLegacyPipelineCheckpointReadsAsTheWholeModel() throws {
        try assertMegatronLogits("torch", directory: "torch_pp2")
        try assertReadsAsTheWholeModel("torch_pp2")
    }

    /// The same model saved by Megatron at tensor-parallel size 2 (`mp_rank_00`, `mp_rank_01`: each rank's slice as
    /// Megatron's sharded state dict cuts it) and at 2 x pipeline size 2 (`mp_rank_TT_PPP`) reads as the one-rank
    /// checkpoint: the rank files hold halves (the vocabulary, two of four query groups, fc1 rows, proj and fc2
    /// columns), joined back bit for bit, with Megatron's logits.
    func testMegatronLegacyTensorParallelCheckpointReadsAsTheWholeModel() throws {
        let rank0 = try TorchSave.read(Data(contentsOf: Self.fixtures.appendingPathComponent("torch_tp2/iter_0000007/mp_rank_00/model_optim_rng.pt")),
                                       source: "mp_rank_00")
        XCTAssertEqual(try MegatronGPTLayout.legacyModel(XCTUnwrap(rank0["model"]), source: "mp_rank_00")["decoder.layers.0.self_attention.linear_qkv.weight"]?.shape,
                       [24, 16], "each rank file holds half the fused QKV rows")
        for directory in ["torch_tp2", "torch_tp2_pp2"] {
            try assertMegatronLogits("torch", directory: directory)
            try assertReadsAsTheWholeModel(directory)
        }
    }

    /// A SwiGLU model saved by Megatron at tensor-parallel size 2: rank r's `linear_fc1` is `[gate_r; up_r]`, joined
    /// into the whole `[gate; up]` (plain concatenation would interleave them), with Megatron's logits.
    func testMegatronLegacyTensorParallelSwiGLUCheckpointReadsAsTheWholeModel() throws {
        let root = Self.fixtures.deletingLastPathComponent().appendingPathComponent("megatron-swiglu")
        try assertReadsAsTheWholeModel("torch_tp2", in: root)
        let loaded = try GPTCheckpoint.load(from: CheckpointDirectory(root: root.appendingPathComponent("torch_tp2")))
        XCTAssertTrue(loaded.model.config.gatedLinearUnit)
        let golden = try Self.golden(in: root)
        assertScaledClose(Self.logits(loaded.model, golden), golden.logits, tolerance: 2e-6, "SwiGLU logits")
    }

    /// The checkpoint in `directory` holds the tensors of the one in `whole`, every one bit for bit.
    func assertReadsAsTheWholeModel(_ directory: String, whole wholeDirectory: String = "torch", in root: URL = fixtures,
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let parts = try XCTUnwrap(try CheckpointDirectory(root: root.appendingPathComponent(directory)).loadLatest(), file: file, line: line)
        let whole = try XCTUnwrap(try CheckpointDirectory(root: root.appendingPathComponent(wholeDirectory)).loadLatest())
        XCTAssertEqual(Set(parts.tensors.keys), Set(whole.tensors.keys), directory, file: file, line: line)
        XCTAssertNotNil(parts.tensors["model.decoder.layers.1.mlp.linear_fc1.weight"], directory, file: file, line: line)
        for (name, t) in whole.tensors {
            XCTAssertEqual(parts.tensors[name]?.shape, t.shape, "\(directory) \(name)", file: file, line: line)
            XCTAssertEqual(parts.tensors[name]?.floats(), t.floats(), "\(directory) \(name)", file: file, line: line)
        }
    }

    /// A 4-layer model saved by Megatron whole and as two stages of two model chunks (`model0`, `model1`; rank 0
    /// holds layers 0 and 2, rank 1 layers 1 and 3, each chunk numbering its one layer 0): the same tensors.
    func testMegatronLegacyVirtualPipelineCheckpointReadsAsTheWholeModel() throws {
        try assertReadsAsTheWholeModel("torch_4layers_pp2_vp2", whole: "torch_4layers")
        XCTAssertEqual(try GPTCheckpoint.load(from: CheckpointDirectory(root: Self.fixtures.appendingPathComponent("torch_4layers_pp2_vp2")))
            .model.config.numLayers, 4)
    }

    /// A grid of rank files with a hole, and rank files whose args say another tensor or pipeline size, are refused
    /// naming the files.
    func testLegacyLayoutsNotReadAreNamed() throws {
        let fm = FileManager.default
        func copy(_ name: String, of fixture: String = "torch_pp2") throws -> URL {
            let root = scratchPath(name)
            try fm.copyItem(at: Self.fixtures.appendingPathComponent(fixture), to: root)
            return root
        }
        let missingRank = try copy("legacy-missing-rank", of: "torch_tp2_pp2")
        try fm.removeItem(at: missingRank.appendingPathComponent("iter_0000007/mp_rank_01_001"))
        XCTAssertThrowsError(try CheckpointDirectory(root: missingRank).loadLatest()) {
            XCTAssertTrue("\($0)".contains("mp_rank_00_000, mp_rank_00_001, mp_rank_01_000 lacks mp_rank_01_001"), "\($0)")
        }
        let lostTensorRank = try copy("legacy-lost-tensor-rank", of: "torch_tp2")
        try fm.removeItem(at: lostTensorRank.appendingPathComponent("iter_0000007/mp_rank_01"))
        XCTAssertThrowsError(try CheckpointDirectory(root: lostTensorRank).loadLatest()) {
            XCTAssertTrue("\($0)".contains("mp_rank_00/model_optim_rng.pt: args.tensor_model_parallel_size 2")
                && "\($0)".contains("1 tensor-parallel x 1 pipeline ranks"), "\($0)")
        }
        let mixedNames = try copy("legacy-mixed-names")
        try fm.createDirectory(at: mixedNames.appendingPathComponent("iter_0000007/mp_rank_01"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try CheckpointDirectory(root: mixedNames).loadLatest()) {
            XCTAssertTrue("\($0)".contains("mp_rank_00_000, mp_rank_00_001, mp_rank_01 are not all"), "\($0)")
        }
        let missingStage = try copy("legacy-missing-stage")
        try fm.removeItem(at: missingStage.appendingPathComponent("iter_0000007/mp_rank_00_001"))
        XCTAssertThrowsError(try CheckpointDirectory(root: missingStage).loadLatest()) {
            XCTAssertTrue("\($0)".contains("pipeline_model_parallel_size 2 and"), "\($0)")
        }
    }

    /// Saved here as torch_dist and read back: every tensor bit for bit (stacked layers un-stacked, TE norm names
    /// mapped back), the optimizer state under its Megatron names, the manifest whole.
    func testTorchDistRoundTripIsExact() throws {
        let source = try GPTCheckpoint.load(from: CheckpointDirectory(root: Self.fixtures.appendingPathComponent("torch_dist")))
        let model = source.model.stateDict()
        var optimizer: [String: Tensor] = [:]
        for (name, p) in model {
            let values = p.floats()
            optimizer["state0." + name] = Tensor(shape: p.shape, values: values.map { $0 * 0.5 })
            optimizer["state1." + name] = Tensor(shape: p.shape, values: values.map { $0 * $0 })
        }
        var manifest = CheckpointManifest()
        GPTCheckpoint.describe(source.model, vocabSize: 100, in: &manifest)
        manifest.consumedSamples = 96
        let root = Self.oracleDirectory ?? scratchPath("torch-dist")
        let store = CheckpointDirectory(root: root)
        try MegatronCheckpointFormat.save(to: store, iteration: 12, model: model, optimizer: optimizer, manifest: manifest)
        let iterationDirectory = root.appendingPathComponent("iter_0000012")
        XCTAssertTrue(DistributedCheckpoint.isDistributedCheckpoint(iterationDirectory))
        let back = try XCTUnwrap(try store.loadLatest())
        XCTAssertNil(back.writtenByMegatron)
        XCTAssertEqual(try back.metadata.manifest().consumedSamples, 96)
        XCTAssertEqual(try back.metadata.manifest().vocabSize, 100)
        XCTAssertEqual(Set(back.tensors.keys), Set(model.keys.map { "model." + $0 } + optimizer.keys.map { "optimizer." + $0 }))
        for (name, t) in model { XCTAssertEqual(back.tensors["model." + name]?.floats(), t.floats(), name) }
        for (name, t) in optimizer { XCTAssertEqual(back.tensors["optimizer." + name]?.floats(), t.floats(), name) }
        // The files are Megatron's: stacked layer keys under TE names, the optimizer's fully-reshardable names.
        let contents = try DistributedCheckpoint.read(iterationDirectory)
        XCTAssertEqual(contents.tensors["decoder.layers.self_attention.linear_qkv.layer_norm_weight"]?.shape, [2, 16])
        XCTAssertEqual(contents.tensors["optimizer.state.exp_avg.decoder.layers.mlp.linear_fc1.weight"]?.shape, [2, 64, 16])
        XCTAssertEqual(contents.common["args"]?.attribute("num_layers")?.intValue, 2)
        XCTAssertEqual(contents.common["iteration"]?.intValue, 12)
        if let oracle = Self.oracleDirectory {
            let golden = try Self.golden()
            let logits = Self.logits(source.model, golden)
            let json = try JSONSerialization.data(withJSONObject: ["logits": logits.map(Double.init)])
            try json.write(to: oracle.appendingPathComponent("logits.json"))
        }
    }

    /// What `convert --saver megatron` writes by default: a release torch_dist checkpoint that rebuilds the model,
    /// tokenizer record included, with the same logits.
    func testReleaseTorchDistRebuildsTheModel() throws {
        let source = try GPTCheckpoint.load(from: CheckpointDirectory(root: Self.fixtures.appendingPathComponent("torch")))
        let store = CheckpointDirectory(root: scratchPath("release-dist"))
        var carried = CheckpointManifest()
        carried.tokenizer = .init(tokenizerType: "HuggingFaceTokenizer", tokenizerModel: "tokenizer")
        try GPTCheckpoint.save(source.model, vocabSize: 300, to: store, release: true, manifest: carried, torchDist: true)
        XCTAssertTrue(DistributedCheckpoint.isDistributedCheckpoint(store.root.appendingPathComponent("release")))
        let back = try GPTCheckpoint.load(from: store)
        XCTAssertEqual(back.vocabSize, 300)
        XCTAssertEqual(back.manifest.tokenizer?.tokenizerType, "HuggingFaceTokenizer")
        let golden = try Self.golden()
        XCTAssertEqual(Self.logits(back.model, golden), Self.logits(source.model, golden))
    }

    /// `MEGATRON_CKPT_ORACLE_OUT=<dir>`: the round trip writes its checkpoint and logits there for
    /// `make_megatron_checkpoints.py check <dir>`.
    static var oracleDirectory: URL? {
        ProcessInfo.processInfo.environment["MEGATRON_CKPT_ORACLE_OUT"].map { URL(fileURLWithPath: $0) }
    }

    func testMegatronFormatErrorsNameTheFile() throws {
        let root = try scratchDirectory("bad-dist")
        let directory = root.appendingPathComponent("iter_0000001")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try DistributedCheckpoint.metadataJSON.write(to: directory.appendingPathComponent("metadata.json"))
        try Data("1".utf8).write(to: root.appendingPathComponent(CheckpointDirectory.trackerName))
        XCTAssertThrowsError(try CheckpointDirectory(root: root).loadLatest()) { XCTAssertTrue("\($0)".contains(".metadata"), "\($0)") }
    }
}
