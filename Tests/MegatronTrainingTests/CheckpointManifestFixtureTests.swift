import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// Checkpoints written before metadata.json went through `CheckpointManifest` (Fixtures/checkpoints, made by
/// scripts/fixtures/make_checkpoint_fixtures.sh) still read field for field, still resume, and are written back
/// under the same keys.
final class CheckpointManifestFixtureTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/checkpoints")

    /// The fixture's flags (scripts/fixtures/make_checkpoint_fixtures.sh) with `extra`.
    func arguments(_ extra: String) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(
            ("--num-layers 1 --hidden-size 8 --num-attention-heads 2 --seq-length 8 --max-position-embeddings 8 "
             + "--micro-batch-size 1 --global-batch-size 2 --lr 1e-3 --lr-warmup-iters 1 --log-interval 1 --eval-iters 0 "
             + "--device cpu --fp16 --initial-loss-scale 128 "
             + extra).split(separator: " ").map(String.init))
    }

    /// A copy of a fixture checkpoint directory, so that nothing a load does touches the committed files.
    func copy(_ name: String) throws -> URL {
        let target = scratchPath("manifest-\(name)")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent(name), to: target)
        return target
    }

    func testPretrainingCheckpointReadsEveryField() throws {
        let checkpoint = try XCTUnwrap(try CheckpointDirectory(root: try copy("pretrain")).loadLatest())
        let manifest = try checkpoint.metadata.manifest()
        XCTAssertEqual(manifest.iteration, 2)
        XCTAssertEqual(manifest.checkpointVersion, 3)
        XCTAssertEqual(manifest.files?.keys.sorted(), ["rank_00000.safetensors"])
        XCTAssertEqual(manifest.consumedSamples, 4)
        XCTAssertEqual(manifest.optimizerSteps, 2)
        XCTAssertEqual(manifest.numFloatingPointOperationsSoFar, 749_568)
        XCTAssertEqual(manifest.gradScaler, DynamicGradScaler.State(scale: 128, growthTracker: 2, hysteresisTracker: 2))
        XCTAssertEqual(manifest.optParamScheduler?.numSteps, 4)
        XCTAssertEqual(manifest.optParamScheduler?.lrDecaySteps, 6)
        XCTAssertEqual(manifest.rng, CheckpointManifest.DropoutRNG(dropoutOffset: 16, tensorParallelDropoutOffset: 16, dropoutSeed: 1235))
        XCTAssertEqual(manifest.parallel, CheckpointManifest.ParallelLayout(tensorModelParallelSize: 1, pipelineModelParallelSize: 1,
                                                                             dataParallelSize: 1, savedLayout: "whole"))
        XCTAssertEqual(manifest.args?["seqLength"]?.int, 8)
        XCTAssertEqual(manifest.args?["fp16"], .bool(true))
        XCTAssertNil(manifest.args?["tokenizerType"])
        XCTAssertEqual(manifest.modelConfig?.numLayers, 1)
        XCTAssertEqual(manifest.modelConfig?.hiddenSize, 8)
        XCTAssertEqual([manifest.vocabSize, manifest.paddedVocabSize, manifest.maxPositionEmbeddings], [257, 384, 8])
        XCTAssertEqual(manifest.untieEmbeddingsAndOutputWeights, false)
        XCTAssertEqual(manifest.shapes?.count, checkpoint.tensors.count)
        XCTAssertNil(manifest.tokenizer)
        XCTAssertNil(manifest.huggingfaceArchitecture)
    }

    /// Resuming the fixture at iteration 2 and training one more iteration gives the loss a run of 3 iterations
    /// from the start logs: weights, optimizer, scheduler, loss scale and dropout stream all came back.
    func testPretrainingCheckpointResumesWhereTheRunLeftOff() throws {
        func thirdLoss(_ extra: String) throws -> String? {
            var lines: [String] = []
            _ = try Pretrainer(arguments: try arguments("--train-iters 3 " + extra)) { lines.append($0) }.run()
            guard let line = lines.first(where: { $0.contains("iteration        3/") }), let loss = line.range(of: "lm loss: ") else {
                return nil
            }
            return String(line[loss.upperBound...].prefix(12))
        }
        let resumed = try thirdLoss("--load \(try copy("pretrain").path)")
        XCTAssertNotNil(resumed)
        XCTAssertEqual(resumed, try thirdLoss(""))
    }

    func testConvertedCheckpointReadsItsTokenizerAndArchitecture() throws {
        let root = try copy("converted")
        let loaded = try GPTCheckpoint.load(from: CheckpointDirectory(root: root))
        XCTAssertEqual(loaded.manifest.huggingfaceArchitecture, "llama")
        XCTAssertEqual(loaded.manifest.tokenizer, CheckpointManifest.RecordedTokenizer(tokenizerType: "HuggingFaceTokenizer",
                                                                                       tokenizerModel: "tokenizer"))
        XCTAssertNil(loaded.manifest.consumedSamples)
        XCTAssertEqual(loaded.vocabSize, 100)
        XCTAssertEqual(loaded.model.config.numLayers, 2)
        let options = try XCTUnwrap(try CheckpointTokenizer.options(recordedIn: loaded.manifest, root: root))
        XCTAssertEqual(options.tokenizerModel, root.appendingPathComponent("tokenizer").path)
    }

    /// The manifest read from each fixture, written again, reads back equal and under the same JSON keys (those of
    /// `model_config` aside: the config gains fields as the model does).
    func testManifestsWriteBackUnderTheSameKeys() throws {
        for file in ["pretrain/iter_0000002/metadata.json", "converted/release/metadata.json"] {
            let url = Self.fixtures.appendingPathComponent(file)
            let original = try Data(contentsOf: url)
            let manifest = try CheckpointMetadata.decode(original, file: url).manifest()
            let written = try CheckpointMetadata.encode(manifest)
            XCTAssertEqual(try CheckpointMetadata.decode(written, file: url).manifest(), manifest, file)
            XCTAssertEqual(try Self.keyPaths(written), try Self.keyPaths(original), file)
        }
    }

    /// Every member's path (`rng.dropout_offset`), not descending into `model_config`.
    static func keyPaths(_ json: Data) throws -> [String] {
        func paths(_ value: Any, _ prefix: String) -> [String] {
            guard let object = value as? [String: Any], prefix != "model_config." else { return [] }
            return object.keys.flatMap { [prefix + $0] + paths(object[$0]!, prefix + $0 + ".") }
        }
        return paths(try JSONSerialization.jsonObject(with: json), "").sorted()
    }
}
