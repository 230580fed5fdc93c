import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// pretrain-gpt's checkpoints as Megatron users rely on them: saved at the end and on every exit, one writer per
/// directory, checked at start-up, strict about what they load.
final class CheckpointSafetyTests: XCTestCase {
    var root: URL!
    var store: CheckpointDirectory { CheckpointDirectory(root: root) }

    override func setUpWithError() throws { root = scratchPath("ckpt-train") }

    static let model = "--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 16"

    func arguments(_ extra: String, model: String = model) throws -> PretrainArguments {
        try MegatronArgumentParser.parse(
            (model + " --max-position-embeddings 16 --micro-batch-size 2 --global-batch-size 4 --lr 1e-2 --lr-decay-iters 100 "
             + "--log-interval 1 --eval-iters 1 --device cpu --ckpt-format safetensors " + extra).split(separator: " ").map(String.init))
    }

    /// Runs a trainer to its end and returns its log.
    @discardableResult
    func train(_ extra: String, model: String = model) throws -> [String] {
        var lines: [String] = []
        _ = try Pretrainer(arguments: try arguments(extra, model: model)) { lines.append($0) }.run()
        return lines
    }

    /// The iterations of the save lines (Megatron's `[time] successfully saved checkpoint from iteration N to ...`).
    func saves(_ lines: [String]) -> [Int] {
        lines.compactMap { line in
            line.range(of: "successfully saved checkpoint from iteration").flatMap { Int(line[$0.upperBound...].split(separator: " ")[0]) }
        }
    }

    func testTrainingSavesTheLastIterationOnce() throws {
        let save = "--save \(root.path) --save-interval 2"
        XCTAssertEqual(saves(try train("--train-iters 5 " + save)), [2, 4, 5])
        XCTAssertEqual(try store.iterations(), [2, 4, 5])
        XCTAssertEqual(try store.latestIteration(), 5)
        try FileManager.default.removeItem(at: root)
        XCTAssertEqual(saves(try train("--train-iters 4 " + save)), [2, 4], "not twice when the last iteration was just saved")
        // Resumed with nothing left to train: the checkpoint it loaded is not written again.
        XCTAssertEqual(saves(try train("--train-iters 4 --load \(root.path) " + save)), [])
    }

    func testEveryExitSavesWhereItStops() throws {
        let save = "--save \(root.path) --save-interval 100 --train-iters 50"
        XCTAssertEqual(saves(try train("--exit-interval 3 " + save)), [3])
        try FileManager.default.removeItem(at: root)
        var lines = try train("--exit-duration-in-mins 0 " + save)
        XCTAssertTrue(lines.contains("> exiting: reached --exit-duration-in-mins 0.0"), lines.joined(separator: "\n"))
        XCTAssertEqual(saves(lines), [1])
        try FileManager.default.removeItem(at: root)
        lines = []
        let trainer = try Pretrainer(arguments: try arguments("--exit-signal-handler " + save)) { lines.append($0) }
        trainer.onIteration = { iteration, _, _, _ in if iteration == 2 { raise(SIGTERM) } }
        let summary = try trainer.run()
        XCTAssertTrue(lines.contains("> exiting: received SIGTERM"), lines.joined(separator: "\n"))
        XCTAssertLessThan(summary.iterations, 50)
        XCTAssertEqual(saves(lines), [summary.iterations])
        XCTAssertEqual(try store.latestIteration(), summary.iterations)
    }

    func testKeepLastAfterResumingFromAnOlderIteration() throws {
        try train("--train-iters 7 --exit-interval 6 --save \(root.path) --save-interval 1 --keep-last-checkpoints 3")
        XCTAssertEqual(try store.iterations(), [4, 5, 6])
        // Resume from 4 (the tracker rolled back): 5 and 6 are written again, 4 stays as one of the three.
        try "4".write(to: root.appendingPathComponent(CheckpointDirectory.trackerName), atomically: true, encoding: .utf8)
        let lines = try train("--train-iters 7 --load \(root.path) --save \(root.path) --save-interval 1 --keep-last-checkpoints 3")
        XCTAssertEqual(saves(lines), [5, 6, 7])
        XCTAssertEqual(try store.iterations(), [5, 6, 7])
        XCTAssertEqual(try store.latestIteration(), 7)
    }

    func testASecondRunIntoTheSameSaveDirectoryIsRefused() throws {
        let save = "--train-iters 4 --save \(root.path) --save-interval 1"
        var first: Pretrainer? = try Pretrainer(arguments: try arguments("--exit-interval 1 " + save)) { _ in }
        XCTAssertThrowsError(try Pretrainer(arguments: try arguments(save)) { _ in }) {
            XCTAssertTrue("\($0)".contains("--save \(root.path)") && "\($0)".contains("another run (process \(getpid())"), "\($0)")
        }
        _ = try first?.run()
        first = nil
        XCTAssertNoThrow(try train("--exit-interval 2 --load \(root.path) " + save))
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent(SaveDirectoryLock.fileName).path))
    }

    func testAnUnusableSavePathFailsAtStartUp() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        for (path, message) in [(file.path, "is a file, not a directory"), (file.path + "/below", "cannot create the directory")] {
            XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 1 --save \(path) --save-interval 1")) { _ in }) {
                XCTAssertTrue("\($0)".hasPrefix("--save \(path): ") && "\($0)".contains(message), "\($0)")
            }
        }
    }

    func testLoadOfSomethingThatIsNotACheckpointDirectory() throws {
        try train("--train-iters 1 --save \(root.path) --save-interval 1")
        let hf = root.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: hf.appendingPathComponent("config.json"))
        let cases = [(root.appendingPathComponent(CheckpointDirectory.trackerName).path, "is a file"),
                     (root.appendingPathComponent("iter_0000001").path, "is one checkpoint's directory; give the directory that holds it"),
                     (hf.path, "is a Hugging Face model; convert it first")]
        for (path, message) in cases {
            XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 1 --load \(path)")) { _ in }) {
                XCTAssertTrue("\($0)".contains("--load \(path)") && "\($0)".contains(message), "\($0)")
            }
        }
        // A directory without a tracker: Megatron's warning and random weights, or an error when asked for one.
        let empty = root.appendingPathComponent("empty").path
        var lines: [String] = []
        _ = try Pretrainer(arguments: try arguments("--train-iters 1 --load \(empty)")) { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.hasPrefix("WARNING: could not find a checkpoint in \(empty)") }, "\(lines)")
        XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 1 --load \(empty) --exit-on-missing-checkpoint")) { _ in }) {
            XCTAssertTrue("\($0)".contains("--exit-on-missing-checkpoint"), "\($0)")
        }
    }

    func testAnotherModelIsRefusedWithBothShapesNamed() throws {
        try train("--train-iters 1 --save \(root.path) --save-interval 1")
        let other = "--num-layers 2 --hidden-size 16 --num-attention-heads 4 --seq-length 16 --swiglu --ffn-hidden-size 32"
        XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 1 --load \(root.path)", model: other)) { _ in }) {
            let text = "\($0)"
            for difference in ["--num-layers: checkpoint 1, flags 2", "--num-attention-heads: checkpoint 2, flags 4",
                               "--kv-channels: checkpoint 8, flags 4", "--swiglu: checkpoint false, flags true",
                               "--ffn-hidden-size: checkpoint 64, flags 32"] {
                XCTAssertTrue(text.contains(difference), "\(difference) in: \(text)")
            }
            XCTAssertFalse(text.contains("--hidden-size"), text)
        }
        let gqa = Self.model + " --group-query-attention --num-query-groups 1"
        XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 1 --load \(root.path)", model: gqa)) { _ in }) {
            XCTAssertTrue("\($0)".contains("--num-query-groups: checkpoint 2, flags 1"), "\($0)")
        }
    }

    func testFinetuneAndNoLoadOptimLoadWeightsOnly() throws {
        try train("--train-iters 5 --exit-interval 3 --save \(root.path) --save-interval 3")
        let saved = try XCTUnwrap(try store.loadLatest()).tensors["model.embedding.word_embeddings.weight"]!.floats()

        let finetune = try Pretrainer(arguments: try arguments("--train-iters 2 --load \(root.path) --finetune")) { _ in }
        XCTAssertEqual(finetune.iteration, 0)
        XCTAssertEqual(finetune.consumedSamples, 0)
        XCTAssertEqual(finetune.optimizer.stepCount, 0)
        XCTAssertEqual(finetune.model.stateDict()["embedding.word_embeddings.weight"]!.floats(), saved)
        XCTAssertEqual(try finetune.run().iterations, 2)

        let fresh = try Pretrainer(arguments: try arguments("--train-iters 5 --load \(root.path) --no-load-optim")) { _ in }
        XCTAssertEqual(fresh.iteration, 3)
        XCTAssertEqual(fresh.consumedSamples, 12)
        XCTAssertEqual(fresh.optimizer.stepCount, 0)
        XCTAssertEqual(fresh.schedule.scheduler.state().numSteps, 0, "the scheduler starts over, as Megatron's")
        XCTAssertEqual(fresh.model.stateDict()["embedding.word_embeddings.weight"]!.floats(), saved)

        let resumed = try Pretrainer(arguments: try arguments("--train-iters 5 --load \(root.path)")) { _ in }
        XCTAssertEqual(resumed.optimizer.stepCount, 3)
    }

    func testAReleaseCheckpointLoadsWithoutOptimizerState() throws {
        let source = try Pretrainer(arguments: try arguments("--train-iters 1")) { _ in }
        try GPTCheckpoint.save(source.model, vocabSize: source.vocabularySize, to: store, release: true)
        var lines: [String] = []
        let trainer = try Pretrainer(arguments: try arguments("--train-iters 2 --load \(root.path)")) { lines.append($0) }
        XCTAssertEqual(trainer.iteration, 0)
        XCTAssertEqual(trainer.model.stateDict()["embedding.word_embeddings.weight"]!.floats(),
                       source.model.stateDict()["embedding.word_embeddings.weight"]!.floats())
        XCTAssertTrue(lines.contains { $0.contains("a release checkpoint: weights only") }, "\(lines)")
        XCTAssertEqual(try trainer.run().iterations, 2)
    }

    func testMissingOrMalformedFieldsAreErrorsNamingFieldAndFile() throws {
        try train("--train-iters 2 --exit-interval 1 --save \(root.path) --save-interval 1")
        let file = root.appendingPathComponent("iter_0000001/metadata.json")
        let values = try store.load(iteration: 1).metadata.values
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("consumed_samples", { $0["consumed_samples"] = nil }, "field 'consumed_samples' is missing"),
            ("consumed_samples", { $0["consumed_samples"] = -4 }, "field 'consumed_samples' is -4"),
            ("optimizer_steps", { $0["optimizer_steps"] = "1" }, "field 'optimizer_steps' is not an integer"),
            ("rng", { $0["rng"] = ["dropout_offset": 0] }, "field 'rng.tensor_parallel_dropout_offset' is missing"),
            ("rng", { $0["rng"] = ["dropout_offset": -1, "tensor_parallel_dropout_offset": 0] }, "field 'rng' holds a negative offset"),
            ("shapes", { $0["shapes"] = nil }, "field 'shapes' is missing"),
            ("shapes", { $0["shapes"] = ["model.output_layer.weight": [1]] }, "field 'shapes' gives"),
            ("opt_param_scheduler", { $0["opt_param_scheduler"] = nil }, "field 'opt_param_scheduler' is missing"),
            ("model_config", { $0["model_config"] = nil }, "field 'model_config' is missing"),
            ("vocab_size", { $0["vocab_size"] = 1.5 }, "field 'vocab_size' is not an integer (it holds 1.5)"),
            ("model_config.numLayers", { $0["model_config"] = ($0["model_config"] as! [String: Any]).merging(["numLayers": 1e30]) { $1 } },
             "field 'model_config.numLayers' is not an integer"),
        ]
        for (field, edit, message) in cases {
            var edited = values
            edited["metadata_crc32c"] = nil
            edited["metadata_checksummed"] = nil
            edit(&edited)
            try CheckpointMetadata.encode(edited).write(to: file)
            XCTAssertThrowsError(try Pretrainer(arguments: try arguments("--train-iters 2 --load \(root.path)")) { _ in }, field) {
                XCTAssertTrue("\($0)".contains(message) && "\($0)".contains(file.path), "\(field): \($0)")
            }
        }
        // Model fields that shape no parameter are not compared: a checkpoint from before a field existed resumes.
        var older = values
        (older["metadata_crc32c"], older["metadata_checksummed"]) = (nil, nil)
        var config = older["model_config"] as! [String: Any]
        config["rotaryBase"] = nil
        older["model_config"] = config
        try CheckpointMetadata.encode(older).write(to: file)
        XCTAssertEqual(try Pretrainer(arguments: try arguments("--train-iters 2 --load \(root.path)")) { _ in }.iteration, 1)
    }
}
