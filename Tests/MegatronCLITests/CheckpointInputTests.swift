import Foundation
import XCTest
import MegatronTestSupport

/// Bad checkpoints and checkpoint paths given to `megatron pretrain-gpt`: each one a message naming the file or
/// flag at fault and a normal non-zero exit, never a trap or a silent start from random weights.
final class CheckpointInputTests: XCTestCase {
    var root: URL!
    let model = ["--num-layers", "1", "--hidden-size", "16", "--num-attention-heads", "2", "--seq-length", "16",
                 "--max-position-embeddings", "16", "--micro-batch-size", "2", "--global-batch-size", "2", "--lr", "1e-3",
                 "--train-iters", "2", "--eval-iters", "1", "--log-interval", "1"]

    override func setUpWithError() throws { root = try scratchDirectory("cli-ckpt") }

    func pretrain(_ flags: [String], model: [String]? = nil) -> [String] { ["pretrain-gpt"] + (model ?? self.model) + flags }

    /// A good checkpoint of iteration 1, written by the program itself.
    func savedCheckpoint(_ megatron: MegatronProcess) throws -> URL {
        let good = root.appendingPathComponent("good")
        // This build's own layout, whose files the damage rows name.
        let outcome = try megatron.run(pretrain(["--exit-interval", "1", "--save", good.path, "--save-interval", "1",
                                                 "--ckpt-format", "safetensors"]))
        XCTAssertEqual(outcome.status, 0, outcome.output)
        return good
    }

    /// A copy of `good` with `damage` done to it.
    func damaged(_ good: URL, _ name: String, _ damage: (URL) throws -> Void) throws -> URL {
        let copy = root.appendingPathComponent(name)
        try FileManager.default.copyItem(at: good, to: copy)
        try damage(copy)
        return copy
    }

    func testDamagedCheckpointsAreRefusedWithTheFileNamed() throws {
        let megatron = try MegatronProcess.built()
        let good = try savedCheckpoint(megatron)
        let shard = "iter_0000001/rank_00000.safetensors", metadata = "iter_0000001/metadata.json"
        let tracker = "latest_checkpointed_iteration.txt"
        let rows: [(String, (URL) throws -> Void, [String])] = [
            ("corrupt-shard", { dir in
                let url = dir.appendingPathComponent(shard)
                var bytes = try Data(contentsOf: url)
                bytes[bytes.count / 2] ^= 0x40
                try bytes.write(to: url)
            }, [shard, "checksum differs"]),
            ("truncated-metadata", { dir in
                let url = dir.appendingPathComponent(metadata)
                try Data(contentsOf: url).prefix(200).write(to: url)
            }, [metadata, "not valid JSON"]),
            ("edited-metadata", { dir in
                let url = dir.appendingPathComponent(metadata)
                let text = try String(contentsOf: url, encoding: .utf8)
                try text.replacingOccurrences(of: "\"consumed_samples\" : 2", with: "\"consumed_samples\" : 3")
                    .write(to: url, atomically: true, encoding: .utf8)
            }, [metadata, "checksum differs"]),
            ("missing-iteration", { dir in try "9".write(to: dir.appendingPathComponent(tracker), atomically: true, encoding: .utf8) },
             [tracker, "names iteration 9", "iter_0000009 does not exist"]),
            ("garbage-tracker", { dir in try "latest".write(to: dir.appendingPathComponent(tracker), atomically: true, encoding: .utf8) },
             [tracker, "'latest'", "not an iteration number"]),
        ]
        for (name, damage, mentions) in rows {
            let dir = try damaged(good, name, damage)
            try megatron.assertCleanFailure(pretrain(["--load", dir.path]), mentions: mentions)
        }
    }

    func testCheckpointOfAnotherModelIsRefusedWithBothShapes() throws {
        let megatron = try MegatronProcess.built()
        let good = try savedCheckpoint(megatron)
        var other = model
        other[other.firstIndex(of: "--num-attention-heads")! + 1] = "4"
        try megatron.assertCleanFailure(pretrain(["--load", good.path], model: other),
                                        mentions: [good.path, "--num-attention-heads: checkpoint 2, flags 4"])
    }

    func testUnusableSaveAndLoadPathsFailAtStartUp() throws {
        let megatron = try MegatronProcess.built()
        let file = root.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        try megatron.assertCleanFailure(pretrain(["--save", file.path, "--save-interval", "1"]), mentions: ["--save \(file.path)", "is a file"])
        try megatron.assertCleanFailure(pretrain(["--load", file.path]), mentions: ["--load \(file.path)", "is a file"])
        #if os(Linux)
        try megatron.assertCleanFailure(pretrain(["--save", "/proc/self/checkpoints", "--save-interval", "1"]),
                                        mentions: ["--save /proc/self/checkpoints", "cannot create"])
        #endif
    }

    func testASecondRunIntoALockedSaveDirectoryIsRefused() throws {
        let megatron = try MegatronProcess.built()
        let save = root.appendingPathComponent("busy")
        let first = Process()
        first.executableURL = megatron.binary
        first.arguments = pretrain(["--train-iters", "1000000", "--save", save.path, "--save-interval", "1000"])
        first.environment = ProcessInfo.processInfo.environment.merging(["CUDA_VISIBLE_DEVICES": ""]) { _, new in new }
        first.standardOutput = FileHandle.nullDevice
        try first.run()
        defer {
            first.terminate()
            first.waitUntilExit()
        }
        let lock = save.appendingPathComponent("megatron_save.lock")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: lock.path) && Date() < deadline { usleep(10_000) }
        try megatron.assertCleanFailure(pretrain(["--save", save.path, "--save-interval", "1"]),
                                        mentions: ["--save \(save.path)", "another run (process \(first.processIdentifier)", lock.path])
    }
}
