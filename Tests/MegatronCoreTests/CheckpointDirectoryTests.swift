import Foundation
import XCTest
import MegatronTensor
@testable import MegatronCore
import MegatronTestSupport

final class CheckpointDirectoryTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = scratchPath("ckpt") }

    func testSaveWritesMegatronLayoutAndLoadsBack() throws {
        let store = CheckpointDirectory(root: root)
        XCTAssertNil(try store.loadLatest())
        try store.save(iteration: 100, tensors: ["w": Tensor(shape: [2], values: [1, 2])], manifest: progress(800))
        try store.save(iteration: 200, tensors: ["w": Tensor(shape: [2], values: [3, 4])], manifest: progress(1600))
        XCTAssertEqual(try String(contentsOf: root.appendingPathComponent("latest_checkpointed_iteration.txt"), encoding: .utf8), "200")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("iter_0000100/metadata.json").path))
        let latest = try XCTUnwrap(try store.loadLatest())
        XCTAssertEqual(latest.iteration, 200)
        XCTAssertEqual(latest.tensors["w"]!.floats(), [3, 4])
        XCTAssertEqual(try latest.metadata.manifest().consumedSamples, 1600)
        try store.prune(keep: 1, newest: 200)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("iter_0000100").path))
        XCTAssertEqual(try store.load(iteration: 200).tensors["w"]!.floats(), [3, 4])
    }

    func testCorruptionIsDetectedWithTheFileNamed() throws {
        let store = CheckpointDirectory(root: root)
        try store.save(iteration: 5, tensors: ["w": Tensor.ones([64])])
        let shard = root.appendingPathComponent("iter_0000005/rank_00000.safetensors")
        var bytes = try Data(contentsOf: shard)
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: shard)
        XCTAssertThrowsError(try store.load(iteration: 5)) { XCTAssertTrue("\($0)".contains("checksum differs"), "\($0)") }
        try bytes.prefix(bytes.count - 8).write(to: shard)
        XCTAssertThrowsError(try store.load(iteration: 5)) { XCTAssertTrue("\($0)".contains("bytes, but the checkpoint recorded"), "\($0)") }
        try "garbage".write(to: root.appendingPathComponent("latest_checkpointed_iteration.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try store.latestIteration()) { XCTAssertTrue("\($0)".contains("not an iteration number or 'release'"), "\($0)") }
        XCTAssertThrowsError(try store.load(iteration: 7)) { XCTAssertTrue("\($0)".hasSuffix("iter_0000007: does not exist"), "\($0)") }
    }

    func testReleaseCheckpointsAsConversionsWriteThem() throws {
        let store = CheckpointDirectory(root: root)
        try store.save(iteration: 0, tensors: ["w": Tensor.ones([2])], release: true)
        XCTAssertEqual(try String(contentsOf: root.appendingPathComponent("latest_checkpointed_iteration.txt"), encoding: .utf8), "release")
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [1, 1])
    }

    func testCRC32CKnownValue() {
        let bytes = Array("123456789".utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { CRC32C.checksum($0) }, 0xE306_9283)
    }
}

/// What a kill at the wrong moment, a second writer or an edited file must never cost: the last good checkpoint.
final class CheckpointDirectorySafetyTests: XCTestCase {
    var root: URL!
    var store: CheckpointDirectory { CheckpointDirectory(root: root) }

    override func setUpWithError() throws { root = scratchPath("ckpt-safety") }

    func save(_ iteration: Int, _ value: Float = 0) throws {
        try store.save(iteration: iteration, tensors: ["w": Tensor(shape: [2], values: [Float(iteration), value])])
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    func setTracker(_ text: String) throws {
        try text.write(toFile: path(CheckpointDirectory.trackerName), atomically: true, encoding: .utf8)
    }

    func testPruneOrdersIterationsNumerically() throws {
        for iteration in [5, 9_999_999, 10_000_000] { try save(iteration) }
        XCTAssertEqual(try store.iterations(), [5, 9_999_999, 10_000_000])
        try store.prune(keep: 1, newest: 10_000_000)
        // Sorted as text, iter_10000000 comes before iter_9999999 and the newest would be the one deleted.
        XCTAssertEqual(try store.iterations(), [10_000_000])
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [10_000_000, 0])
    }

    func testPruneKeepsTheTrackersAndLeavesNewerIterations() throws {
        for iteration in 1...6 { try save(iteration) }
        // A run resumed from iteration 2 (the tracker rolled back), now writing 4 again: 5 and 6 belong to the
        // abandoned run and stay until training reaches them; the tracker's 2 stays whatever `keep` says.
        try setTracker("2")
        try store.prune(keep: 1, newest: 4)
        XCTAssertEqual(try store.iterations(), [2, 4, 5, 6])
        try save(5, 1)
        try store.prune(keep: 2, newest: 5)
        XCTAssertEqual(try store.iterations(), [4, 5, 6])
        XCTAssertEqual(try store.load(iteration: 5).tensors["w"]?.floats(), [5, 1])
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: root.path).contains { $0.hasSuffix(".deleting") })
    }

    func testResaveKeepsTheOldCheckpointUntilTheNewOneIsInPlace() throws {
        try save(3, 1)
        try save(3, 2)
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [3, 2])
        try store.save(iteration: 0, tensors: ["w": Tensor.ones([2])], release: true)
        try store.save(iteration: 0, tensors: ["w": Tensor.zeros([2])], release: true)
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [0, 0])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0.hasPrefix(".") }, [])
    }

    func testAKillBetweenTheRenamesOfAResaveLosesNothing() throws {
        try save(3, 1)
        // The state a kill leaves between moving the old checkpoint aside and renaming the new one into place.
        try FileManager.default.moveItem(atPath: path("iter_0000003"), toPath: path(".iter_0000003.old"))
        try FileManager.default.createDirectory(atPath: path(".iter_0000003.partial"), withIntermediateDirectories: false)
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [3, 1], "the reader falls back to the set-aside copy")
        let lock = try SaveDirectoryLock(directory: root)
        try store.repairInterruptedSave()
        lock.release()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root.path).sorted(),
                       ["iter_0000003", CheckpointDirectory.trackerName])
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [3, 1])
    }

    func testTrackerNamingAMissingIterationOrHoldingGarbageIsAnError() throws {
        try save(3)
        for (text, message) in [("7", "names iteration 7, but"), ("-3", "not an iteration number"), ("3x", "not an iteration number"),
                                ("", "not an iteration number"), (String(repeating: "9", count: 100), "not an iteration number")] {
            try setTracker(text)
            XCTAssertThrowsError(try store.loadLatest(), text) { XCTAssertTrue("\($0)".contains(message), "\(text): \($0)") }
        }
        try setTracker(" 3\n")
        XCTAssertEqual(try store.loadLatest()?.iteration, 3)
    }

    func testMetadataChecksumDetectsTruncationAndEdits() throws {
        try store.save(iteration: 4, tensors: ["w": Tensor.ones([2])], manifest: progress(800))
        let file = path("iter_0000004/metadata.json")
        let original = try String(contentsOfFile: file, encoding: .utf8)
        XCTAssertTrue(original.hasPrefix("{\n  \"metadata_crc32c\" : \""), original)
        XCTAssertEqual(try store.load(iteration: 4).metadata.manifest().consumedSamples, 800)
        let edits = [
            ("truncated", String(original.prefix(original.count / 2)), "not valid JSON"),
            ("a value changed", original.replacingOccurrences(of: "800", with: "900"), "checksum differs"),
            ("the checksum removed", original.replacingOccurrences(of: #""metadata_crc32c" : "\w+","#, with: "", options: .regularExpression),
             "checksum member metadata_crc32c was removed"),
            ("reformatted", original.replacingOccurrences(of: "{\n  \"metadata_crc32c\"", with: "{ \"metadata_crc32c\""), "was edited"),
        ]
        for (what, text, message) in edits {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try store.load(iteration: 4), what) {
                XCTAssertTrue("\($0)".contains(message) && "\($0)".contains(file), "\(what): \($0)")
            }
        }
    }

    func testMetadataWithoutChecksumFromEarlierVersionsStillLoads() throws {
        try store.save(iteration: 2, tensors: ["w": Tensor.ones([2])])
        let metadata = try store.load(iteration: 2).metadata
        // The form version 3 of this program wrote: sorted, pretty-printed, no checksum member.
        var legacy = metadata.values
        legacy["metadata_crc32c"] = nil
        legacy["metadata_checksummed"] = nil
        try JSONSerialization.data(withJSONObject: legacy, options: [.sortedKeys, .prettyPrinted])
            .write(to: root.appendingPathComponent("iter_0000002/metadata.json"))
        XCTAssertEqual(try store.load(iteration: 2).tensors["w"]?.floats(), [1, 1])
    }

    func testMissingHeaderFieldsAreNamed() throws {
        try store.save(iteration: 2, tensors: ["w": Tensor.ones([2])])
        let values = try store.load(iteration: 2).metadata.values
        let cases: [(String, Any?, String)] = [
            ("iteration", nil, "field 'iteration' is missing"), ("iteration", 5, "field 'iteration' is 5"),
            ("files", nil, "field 'files' is missing"), ("files", [String: Any](), "lists no rank_00000"),
            ("iteration", "2", "field 'iteration' is not an integer"),
        ]
        for (field, value, message) in cases {
            var edited = values
            edited["metadata_crc32c"] = nil
            edited["metadata_checksummed"] = nil
            edited[field] = value
            let file = root.appendingPathComponent("iter_0000002/metadata.json")
            try CheckpointMetadata.encode(edited).write(to: file)
            XCTAssertThrowsError(try store.load(iteration: 2), field) {
                XCTAssertTrue("\($0)".contains(message) && "\($0)".contains(file.path), "\(field): \($0)")
            }
        }
    }
}

/// One writer per `--save` directory; a dead writer's lock does not block forever.
final class SaveDirectoryLockTests: XCTestCase {
    var root: URL!
    var lockFile: String { root.appendingPathComponent(SaveDirectoryLock.fileName).path }

    override func setUpWithError() throws { root = scratchPath("lock") }

    func testASecondWriterIsRefusedUntilTheFirstReleases() throws {
        let first = try SaveDirectoryLock(directory: root)
        XCTAssertEqual(try String(contentsOfFile: lockFile, encoding: .utf8),
                       "pid \(getpid())\nhost \(SaveDirectoryLock.hostName)\n")
        XCTAssertThrowsError(try SaveDirectoryLock(directory: root)) {
            XCTAssertTrue("\($0)".contains("another run (process \(getpid()) on host \(SaveDirectoryLock.hostName))"), "\($0)")
        }
        first.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: lockFile))
        XCTAssertNoThrow(try SaveDirectoryLock(directory: root))
    }

    func testALockLeftByADeadProcessIsTakenOver() throws {
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/sh")
        dead.arguments = ["-c", "exit 0"]
        try dead.run()
        dead.waitUntilExit()
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try "pid \(dead.processIdentifier)\nhost \(SaveDirectoryLock.hostName)\n".write(toFile: lockFile, atomically: true, encoding: .utf8)
        let lock = try SaveDirectoryLock(directory: root)
        XCTAssertTrue(try String(contentsOfFile: lockFile, encoding: .utf8).hasPrefix("pid \(getpid())\n"))
        lock.release()
    }

    func testALockOfAnotherHostOrUnreadableIsRefusedWithWhatToDo() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for (text, message) in [("pid 12\nhost elsewhere-node\n", "process 12 on host elsewhere-node"), ("garbage", "holds 'garbage'")] {
            try text.write(toFile: lockFile, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try SaveDirectoryLock(directory: root)) {
                XCTAssertTrue("\($0)".contains(message) && "\($0)".contains("delete"), "\($0)")
            }
        }
    }

    func testAnUnusableDirectoryIsRefused() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("a-file")
        try Data().write(to: file)
        XCTAssertThrowsError(try SaveDirectoryLock(directory: file)) { XCTAssertTrue("\($0)".contains("is a file, not a directory"), "\($0)") }
        XCTAssertThrowsError(try SaveDirectoryLock(directory: file.appendingPathComponent("below"))) {
            XCTAssertTrue("\($0)".contains("cannot create the directory"), "\($0)")
        }
        #if os(Linux)
        // /proc takes no new files, even from root.
        XCTAssertThrowsError(try SaveDirectoryLock(directory: URL(fileURLWithPath: "/proc/self"))) {
            XCTAssertTrue("\($0)".contains("cannot write a lock file"), "\($0)")
        }
        #endif
    }
}

/// A manifest recording only training progress.
private func progress(_ consumedSamples: Int) -> CheckpointManifest {
    var manifest = CheckpointManifest()
    manifest.consumedSamples = consumedSamples
    return manifest
}
