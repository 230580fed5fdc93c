import Foundation
import MegatronParallel
import MegatronTensor
import MegatronTestSupport
import XCTest
@testable import MegatronCore

/// Megatron-LM's own checkpoints of a tiny mixture-of-experts GPTModel (`make_megatron_checkpoints.py save --model
/// moe`: local spec, `SequentialMLP` experts, top-2 sigmoid routing with an expert bias, a gated shared expert; and
/// `--model moe-mixed`, the same with `moe_layer_freq [1, 0]`, whose keys are per layer) load here with Megatron's
/// logits, and ours are written in exactly its layout (`keys.json`: the keys and global shapes of its `.metadata`),
/// which Megatron's `dist_checkpointing.load` loads with our logits (the script's `check --model moe|moe-mixed`).
final class MegatronMoECheckpointTests: XCTestCase {
    static let fixturesRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    /// Every layer a mixture of experts (stacked keys), and an MoE layer before a dense one (per-layer keys).
    static let models = ["moe", "moe-mixed"]

    static func fixtures(_ model: String = "moe") -> URL { fixturesRoot.appendingPathComponent("megatron-" + model) }

    struct Golden: Decodable {
        var tokens: [[Int]]
        var logits: [Float]
    }

    struct Keys: Decodable {
        struct Entry: Decodable { var shape: [Int] }
        var tensors: [String: Entry]
        var objects: [String]
    }

    static func golden(_ model: String = "moe") throws -> Golden {
        try JSONDecoder().decode(Golden.self, from: Data(contentsOf: fixtures(model).appendingPathComponent("logits.json")))
    }

    static func logits(_ model: GPTModel, _ golden: Golden) -> [Float] {
        let ids = Tensor(shape: [golden.tokens.count, golden.tokens[0].count], ints: golden.tokens.flatMap { $0 })
        return withoutGrad { model(ids) }.floats()
    }

    static func load(_ format: String, model: String = "moe") throws -> GPTCheckpoint.Loaded {
        try GPTCheckpoint.load(from: CheckpointDirectory(root: fixtures(model).appendingPathComponent(format)))
    }

    func assertMegatronLogits(_ format: String, model: String = "moe", file: StaticString = #filePath, line: UInt = #line) throws {
        let loaded = try Self.load(format, model: model)
        let moe = try XCTUnwrap(loaded.model.config.moe, "args.num_experts gives the experts", file: file, line: line)
        XCTAssertEqual([moe.numExperts, moe.topk, moe.ffnHiddenSize, moe.sharedExpertIntermediateSize ?? 0], [4, 2, 8, 12], file: file, line: line)
        XCTAssertEqual(moe.layers, model == "moe" ? [true, true] : [true, false], file: file, line: line)
        XCTAssertEqual(moe.scoreFunction, .sigmoid, file: file, line: line)
        XCTAssertTrue(moe.expertBias && moe.sharedExpertGate == true, file: file, line: line)
        // The fixture's biases are drawn non-zero: a bias left at zero would route differently.
        let bias = try XCTUnwrap(loaded.model.moeLayers.last?.router.expertBias, file: file, line: line).floats()
        XCTAssertTrue(bias.allSatisfy { $0 != 0 }, "\(bias)", file: file, line: line)
        let golden = try Self.golden(model)
        assertScaledClose(Self.logits(loaded.model, golden), golden.logits, tolerance: 2e-6, "\(model) \(format) logits", file: file, line: line)
    }

    func testMegatronMoETorchDistCheckpointGivesMegatronsLogits() throws { try assertMegatronLogits("torch_dist") }

    func testMegatronMoELegacyTorchCheckpointGivesMegatronsLogits() throws { try assertMegatronLogits("torch") }

    func testMegatronMixedMoEAndDenseLayersGiveMegatronsLogits() throws { try assertMegatronLogits("torch_dist", model: "moe-mixed") }

    /// Megatron's fixture `model` saved here as torch_dist into `root`, beside the logits it gives (`logits.json`,
    /// what the script's `check` compares Megatron's with).
    @discardableResult
    static func saveOurs(_ model: String, to root: URL) throws -> GPTModel {
        let source = try load("torch_dist", model: model)
        try GPTCheckpoint.save(source.model, vocabSize: 384, to: CheckpointDirectory(root: root), iteration: 7, torchDist: true)
        let logits = Self.logits(source.model, try golden(model))
        try JSONSerialization.data(withJSONObject: ["logits": logits.map(Double.init)]).write(to: root.appendingPathComponent("logits.json"))
        return source.model
    }

    /// Saved here as torch_dist: the same tensor keys with the same global shapes as Megatron's (experts on an expert
    /// axis, the expert bias stacked or per layer as the layers are), every `_extra_state` object Megatron requests,
    /// the same values, and read back bit for bit. The MoE layers' pre-MLP norm is also under the Transformer Engine
    /// spec's key, so that its MoE GPTModel loads it too.
    func testOurMoETorchDistIsMegatronsLayoutAndRoundTrips() throws {
        for (model, layer) in zip(Self.models, ["", "0."]) {
            let root = scratchPath("moe-dist")
            let source = try Self.saveOurs(model, to: root)
            var contents = try DistributedCheckpoint.read(root.appendingPathComponent("iter_0000007"))
            let megatron = try JSONDecoder().decode(Keys.self, from: Data(contentsOf: Self.fixtures(model).appendingPathComponent("keys.json")))
            for suffix in ["weight", "bias"] {
                let te = try XCTUnwrap(contents.tensors.removeValue(forKey: "decoder.layers.\(layer)pre_mlp_layernorm." + suffix), model)
                XCTAssertEqual(te.floats(), contents.tensors["decoder.layers.\(layer)mlp.linear_fc1.layer_norm_" + suffix]?.floats(), model)
            }
            XCTAssertEqual(contents.tensors.mapValues(\.shape), megatron.tensors.mapValues(\.shape), model)
            let missing = Set(megatron.objects).subtracting(contents.objects.keys).subtracting([DistributedCheckpoint.commonKey])
            XCTAssertEqual(missing, [], "\(model): objects Megatron's load requests")
            // The expert axis holds each expert at its number: Megatron's own file and ours agree tensor by tensor.
            let theirs = try DistributedCheckpoint.read(Self.fixtures(model).appendingPathComponent("torch_dist/iter_0000007"))
            for (key, t) in theirs.tensors { XCTAssertEqual(contents.tensors[key]?.floats(), t.floats(), "\(model) \(key)") }

            let back = try GPTCheckpoint.load(from: CheckpointDirectory(root: root))
            let golden = try Self.golden(model)
            XCTAssertEqual(Self.logits(back.model, golden), Self.logits(source, golden), model)
            XCTAssertEqual(back.model.moeLayers[0].router.expertBias?.floats(), source.moeLayers[0].router.expertBias?.floats(), model)
        }
    }

    /// Megatron-LM's `dist_checkpointing.load` reads ours into its MoE GPTModels with our logits (the script's `check
    /// --model moe|moe-mixed`, within 1e-5). Runs where torch and Megatron-LM's source are: `MEGATRON_LM_SOURCE`
    /// (default /tmp/mlm) and `MEGATRON_PYTHON` (default python3); skipped elsewhere. Measured when written: 4.2e-7.
    func testMegatronLoadsOursWithOurLogits() throws {
        let environment = ProcessInfo.processInfo.environment
        let megatron = environment["MEGATRON_LM_SOURCE"] ?? "/tmp/mlm"
        let python = environment["MEGATRON_PYTHON"] ?? "python3"
        guard FileManager.default.fileExists(atPath: megatron + "/megatron/core/dist_checkpointing") else {
            throw XCTSkip("no Megatron-LM source at \(megatron) (MEGATRON_LM_SOURCE)")
        }
        guard try Self.run(python, ["-c", "import torch, einops, psutil"]).status == 0 else {
            throw XCTSkip("\(python) lacks torch, einops or psutil (MEGATRON_PYTHON)")
        }
        let script = Self.fixturesRoot.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/fixtures/make_megatron_checkpoints.py").path
        for model in Self.models {
            let root = scratchPath("moe-oracle")
            try Self.saveOurs(model, to: root)
            let (status, output) = try Self.run(python, [script, "check", root.path, "--model", model, "--megatron", megatron],
                                                environment: ["MASTER_PORT": "\(Int.random(in: 30000..<40000))"])
            XCTAssertEqual(status, 0, "\(model): \(output)")
            XCTAssertTrue(output.contains("max |logits diff|"), "\(model): \(output)")
        }
    }

    /// Runs `program` (looked up on PATH) with `arguments`; its exit status and output.
    static func run(_ program: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Expert parallelism on two thread ranks: each rank's boxes of the expert axis are its experts' global numbers,
    /// both when it writes them (its chunks are the whole checkpoint's boxes) and when it reads them back.
    func testExpertParallelRanksWriteAndReadTheirBoxesOfTheExpertAxis() throws {
        let whole = try Self.load("torch_dist").model
        let root = scratchPath("moe-ep")
        try GPTCheckpoint.save(whole, vocabSize: 384, to: CheckpointDirectory(root: root), iteration: 7, torchDist: true)
        let directory = root.appendingPathComponent("iter_0000007")
        let saved = try DistributedCheckpoint.read(directory).tensors
        let wholeState = whole.stateDict()
        let checked = try ThreadCommunicator.run(worldSize: 2) { world -> Int in
            let model = GPTModel(config: whole.config, vocabSize: whole.vocabSize, maxSequenceLength: whole.maxSequenceLength,
                                 untieEmbeddingsAndOutputWeights: false)
            try model.distributeExperts(over: ExpertParallelGroup(world))
            let layout = try ShardedGPTLayout(model: model, tensorRank: 0, tensorSize: 1)
            let state = try ShardedGPTCheckpoint.readModel(try DistributedCheckpointReader(directory: directory), layout: layout, model: model)
            try GPTCheckpoint.loadWeights(Dictionary(uniqueKeysWithValues: state.map { ("model." + $0.key, $0.value) }), into: model, source: "test")
            var count = 0
            for (name, p) in model.namedParameters() {
                XCTAssertEqual(p.floats(), wholeState[name]?.floats(), "rank \(world.rank) read \(name)")
                for chunk in ShardedGPTCheckpoint.pieces("", name, ShardBox(whole: p.shape), values: p, layout, false) {
                    let expected = try XCTUnwrap(saved[chunk.key], chunk.key)
                    XCTAssertEqual(chunk.tensor.floats(), chunk.box.view(of: expected).madeContiguous().floats(), "rank \(world.rank) writes \(name)")
                    if name.contains(".local_experts.") { count += 1 }
                }
            }
            return count
        }
        // Each rank holds 2 experts of each of 2 layers, each with fc1 and fc2.
        XCTAssertEqual(checked, [8, 8])
        XCTAssertEqual(Set(try ThreadCommunicator.run(worldSize: 2) { world -> [String] in
            let model = GPTModel(config: whole.config, vocabSize: whole.vocabSize, maxSequenceLength: whole.maxSequenceLength,
                                 untieEmbeddingsAndOutputWeights: false)
            try model.distributeExperts(over: ExpertParallelGroup(world))
            return model.namedParameters().map(\.0).filter { $0.hasPrefix("decoder.layers.0.mlp.experts.") }
        }.flatMap { $0 }).count, 8, "the ranks' experts are the 4 experts of layer 0, by their global numbers")
    }

    /// A sharded checkpoint of earlier builds (one key per expert) is refused by name with the way to rewrite it; the
    /// whole-model read (convert, generate) still loads it.
    func testEarlierPerExpertLayoutIsRefusedForResumeAndReadWhole() throws {
        let whole = try Self.load("torch_dist").model
        var state: [String: Tensor] = [:]
        for (name, t) in whole.namedParameters() + whole.checkpointBuffers() { state[name] = t }
        // What earlier builds wrote: the experts' names kept, only the layers stacked.
        var tensors = try MegatronGPTLayout.sharded(state.filter { !$0.key.contains(".local_experts.") }, numLayers: 2)
        for e in 0..<4 {
            for fc in ["linear_fc1", "linear_fc2"] {
                let layers = (0..<2).map { state["decoder.layers.\($0).mlp.experts.local_experts.\(e).\(fc).weight"]! }
                tensors["decoder.layers.mlp.experts.local_experts.\(e).\(fc).weight"] = Ops.concat(layers.map { $0.reshaped([1] + $0.shape) }, dim: 0)
            }
        }
        let root = scratchPath("moe-old")
        var manifest = CheckpointManifest()
        GPTCheckpoint.describe(whole, vocabSize: 384, in: &manifest)
        let directory = root.appendingPathComponent("iter_0000001")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try DistributedCheckpoint.write(.init(tensors: tensors, objects: [:], common: try MegatronCheckpointFormat.commonState(manifest, megatronArgs: [])),
                                        to: directory)
        try Data("1".utf8).write(to: root.appendingPathComponent(CheckpointDirectory.trackerName))
        let reader = try DistributedCheckpointReader(directory: directory)
        let layout = try ShardedGPTLayout(model: whole, tensorRank: 0, tensorSize: 1)
        XCTAssertThrowsError(try ShardedGPTCheckpoint.readModel(reader, layout: layout, model: whole)) {
            XCTAssertTrue("\($0)".contains("one key per expert") && "\($0)".contains("megatron convert"), "\($0)")
        }
        let golden = try Self.golden()
        XCTAssertEqual(Self.logits(try GPTCheckpoint.load(from: CheckpointDirectory(root: root)).model, golden), Self.logits(whole, golden))
    }

    /// Megatron's args name the experts; ours say the same, so that `--use-checkpoint-args` rebuilds the model.
    func testMoEArgsRoundTrip() throws {
        let moe = try XCTUnwrap(try Self.load("torch_dist").model.config.moe)
        var manifest = CheckpointManifest()
        GPTCheckpoint.describe(try Self.load("torch_dist").model, vocabSize: 384, in: &manifest)
        let args = MegatronArgs.namespace(manifest, extra: [])
        XCTAssertEqual(args.attribute("num_experts")?.intValue, 4)
        XCTAssertEqual(args.attribute("moe_layer_freq")?.intValue, 1)
        XCTAssertEqual(try MegatronArgs.manifest(args, source: "test").modelConfig?.moe, moe)
        var mixed = moe
        mixed.layers = [false, true]
        manifest.modelConfig?.moe = mixed
        let list = MegatronArgs.namespace(manifest, extra: []).attribute("moe_layer_freq")?.elements?.compactMap(\.intValue)
        XCTAssertEqual(list, [0, 1])
    }
}
