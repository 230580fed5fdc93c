import Foundation
import XCTest
@testable import MegatronCore
@testable import MegatronTraining
import MegatronTestSupport

/// `kill -9` at random instants of saving, re-saving and pruning (the `megatron` executable as a child process,
/// each one resumed from what the last one left) never costs the checkpoint the tracker names.
final class CrashSafetyTests: XCTestCase {
    var root: URL!
    var store: CheckpointDirectory { CheckpointDirectory(root: root) }
    let model = "--num-layers 1 --hidden-size 16 --num-attention-heads 2 --seq-length 8 --max-position-embeddings 8 --micro-batch-size 1 --global-batch-size 1"

    override func setUpWithError() throws { root = scratchPath("crash") }

    func megatron() throws -> URL { try builtMegatronExecutable() }

    /// Starts `megatron arguments` on the CPU with its output discarded.
    func start(_ binary: URL, _ arguments: String) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments.split(separator: " ").map(String.init)
        process.environment = ProcessInfo.processInfo.environment.merging(["CUDA_VISIBLE_DEVICES": ""]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    func killed(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The tracker's text, or "" (read as a reader would, while a child may be replacing it).
    var tracker: String {
        (try? String(contentsOf: root.appendingPathComponent(CheckpointDirectory.trackerName), encoding: .utf8)) ?? ""
    }

    /// Waits until `done` holds or `limit` seconds pass.
    func wait(limit: TimeInterval = 60, until done: () -> Bool) {
        let deadline = Date().addingTimeInterval(limit)
        while !done() && Date() < deadline { usleep(200) }
    }

    /// Whether a save is under way: its staging directory exists.
    var saving: Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).contains { $0.hasSuffix(".partial") }
    }

    /// The tracker names a complete checkpoint whose metadata reads strictly.
    func requireLoadable(_ context: String) throws -> Int {
        do {
            let checkpoint = try XCTUnwrap(try store.loadLatest(), "\(context): no tracker")
            _ = try GPTCheckpoint.ModelDescription(of: checkpoint)
            try Pretrainer.requireRecordedShapes(checkpoint)
            _ = try checkpoint.metadata.decode(SavedProgress.self)
            _ = try checkpoint.metadata.decode(SavedOptimizer.self)
            return checkpoint.iteration
        } catch {
            XCTFail("\(context): \(error)")
            throw error
        }
    }

    func testKillsWhileTrainingSavesAndPrunesLoseNothing() throws {
        let flags = "pretrain-gpt \(model) --train-iters 1000000 --lr 1e-3 --log-interval 100000 --eval-iters 1 "
            + "--load \(root.path) --save \(root.path) --save-interval 1 --keep-last-checkpoints 3"
        let interrupted = try killDuringTraining(flags, rounds: 12, seed: 16) { round in
            // Every third child resumes from the oldest of the three checkpoints kept, so it saves over the two newer
            // ones (the kill lands in the second: the first one is timed).
            let kept = (try? store.iterations()) ?? []
            if round % 3 == 2, kept.count == 3 {
                try "\(kept[0])".write(to: root.appendingPathComponent(CheckpointDirectory.trackerName), atomically: true, encoding: .utf8)
            }
        }
        XCTAssertGreaterThan(interrupted, 2, "kills that landed inside a save or a prune (timing decides how many)")
        // The lock of the last killed child names a dead process: a new run takes it over and resumes.
        let resumedFrom = try requireLoadable("after the kills")
        let args = try MegatronArgumentParser.parse(
            (model + " --train-iters 1000000 --exit-interval \(resumedFrom + 1) --lr 1e-3 --log-interval 1 --eval-iters 1 --device cpu "
             + "--load \(root.path) --save \(root.path) --save-interval 100").split(separator: " ").map(String.init))
        let summary = try Pretrainer(arguments: args) { _ in }.run()
        XCTAssertEqual(summary.iterations, resumedFrom + 1)
        XCTAssertEqual(try store.latestIteration(), resumedFrom + 1)
    }

    /// With `--async-save` training goes on while a background thread writes each checkpoint: a kill at any instant
    /// of that write leaves the checkpoint the tracker names loadable.
    func testKillsDuringAsyncSavesLoseNothing() throws {
        let flags = "pretrain-gpt \(model) --train-iters 1000000 --lr 1e-3 --log-interval 100000 --eval-iters 1 --async-save "
            + "--load \(root.path) --save \(root.path) --save-interval 1 --keep-last-checkpoints 2"
        let interrupted = try killDuringTraining(flags, rounds: 6, seed: 19) { _ in }
        XCTAssertGreaterThan(interrupted, 0, "kills that landed inside a save (timing decides how many)")
    }

    /// `rounds` children of `megatron flags`, each resuming from what the last left (after `prepare(round)`), each
    /// killed at a random instant of a save (from its staging directory to the tracker, the span measured on the
    /// child's first save); the tracker must name a loadable checkpoint after each kill. Returns how many kills
    /// landed inside a save or a prune.
    func killDuringTraining(_ flags: String, rounds: Int, seed: UInt64, prepare: (Int) throws -> Void) throws -> Int {
        let binary = try megatron()
        var generator = SplitMix64(seed: seed)
        var interrupted = 0
        for round in 0..<rounds {
            try prepare(round)
            let before = tracker
            let child = try start(binary, flags)
            wait { saving }
            let started = Date()
            wait { tracker != before }
            let span = max(1000, Int(Date().timeIntervalSince(started) * 1_000_000))
            wait { saving }
            let delay = generator.next(below: span)
            usleep(useconds_t(delay))
            killed(child)
            let iteration = try requireLoadable("round \(round), killed \(delay) µs into a save of about \(span) µs")
            XCTAssertGreaterThan(iteration, 0)
            // Hidden names left behind: the kill landed inside a save or a prune.
            if try FileManager.default.contentsOfDirectory(atPath: root.path).contains(where: { $0.hasPrefix(".") }) { interrupted += 1 }
        }
        return interrupted
    }

    func testKillsWhileReSavingTheIterationTheTrackerNamesLoseNothing() throws {
        let binary = try megatron()
        let source = root.appendingPathComponent("source").path, target = root.appendingPathComponent("target")
        let args = try MegatronArgumentParser.parse((model + " --train-iters 2 --lr 1e-3 --eval-iters 1 --device cpu --save \(source) "
            + "--save-interval 2").split(separator: " ").map(String.init))
        _ = try Pretrainer(arguments: args) { _ in }.run()
        // A finished run loaded from elsewhere saves its iteration into --save at the end: over the one there.
        let flags = "pretrain-gpt \(model) --train-iters 2 --lr 1e-3 --eval-iters 1 --load \(source) --save \(target.path) --save-interval 2"
        let store = CheckpointDirectory(root: target)
        let interrupted = try killDuringSaves(binary, flags, into: target, staging: ".iter_0000002.partial", seed: 18) { context in
            do {
                let checkpoint = try XCTUnwrap(try store.loadLatest())
                XCTAssertEqual(checkpoint.iteration, 2, context)
                _ = try checkpoint.metadata.decode(SavedProgress.self)
            } catch {
                XCTFail("\(context): \(error)")
            }
        }
        XCTAssertGreaterThan(interrupted, 2, "kills that landed inside the save (timing decides how many)")
    }

    func testKillsWhileConvertRewritesTheReleaseCheckpointLoseNothing() throws {
        let binary = try megatron()
        let args = try MegatronArgumentParser.parse((model + " --train-iters 1 --lr 1e-3 --device cpu").split(separator: " ").map(String.init))
        let source = try Pretrainer(arguments: args) { _ in }
        try GPTCheckpoint.save(source.model, vocabSize: source.vocabularySize, to: store, release: true)
        let convert = "convert --loader megatron --saver megatron --load-dir \(root.path) --save-dir \(root.path)"
        let interrupted = try killDuringSaves(binary, convert, into: root, staging: ".release.partial", seed: 17) { context in
            XCTAssertEqual(tracker, "release", context)
            do {
                _ = try GPTCheckpoint.load(from: store)
            } catch {
                XCTFail("\(context): \(error)")
            }
        }
        XCTAssertGreaterThan(interrupted, 2, "kills that landed inside the save (timing decides how many)")
    }

    /// Runs `command` (one save into `directory`, over the checkpoint the tracker names) to its end, timing its save
    /// from the `staging` directory's appearance to the tracker's replacement; then 16 more times, each killed at a
    /// random instant of that span and checked by `verify`. Returns how many kills landed inside the save.
    func killDuringSaves(_ binary: URL, _ command: String, into directory: URL, staging: String, seed: UInt64,
                         verify: (String) -> Void) throws -> Int {
        let staged = { (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?.contains(staging) ?? false }
        let tracker = directory.appendingPathComponent(CheckpointDirectory.trackerName).path
        let trackerFile = { (try? FileManager.default.attributesOfItem(atPath: tracker))?[.systemFileNumber] as? UInt64 }
        let before = trackerFile()
        let first = try start(binary, command)
        wait(until: staged)
        let started = Date()
        wait { trackerFile() != before }
        let span = max(1000, Int(Date().timeIntervalSince(started) * 1_000_000))
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0)
        var generator = SplitMix64(seed: seed)
        var interrupted = 0
        for round in 0..<16 {
            let child = try start(binary, command)
            wait(until: staged)
            let delay = generator.next(below: span)
            usleep(useconds_t(delay))
            killed(child)
            verify("round \(round), killed \(delay) µs into a save of about \(span) µs")
            if try FileManager.default.contentsOfDirectory(atPath: directory.path).contains(where: { $0.hasPrefix(".") }) { interrupted += 1 }
        }
        return interrupted
    }
}
