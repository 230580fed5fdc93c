import Foundation
import XCTest
import MegatronTensor
@testable import MegatronCore

final class CheckpointDirectoryTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func testSaveWritesMegatronLayoutAndLoadsBack() throws {
        let store = CheckpointDirectory(root: root)
        XCTAssertNil(try store.loadLatest())
        try store.save(iteration: 100, tensors: ["w": Tensor(shape: [2], values: [1, 2])], metadata: ["consumed_samples": 800])
        try store.save(iteration: 200, tensors: ["w": Tensor(shape: [2], values: [3, 4])], metadata: ["consumed_samples": 1600])
        XCTAssertEqual(try String(contentsOf: root.appendingPathComponent("latest_checkpointed_iteration.txt"), encoding: .utf8), "200")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("iter_0000100/metadata.json").path))
        let latest = try XCTUnwrap(try store.loadLatest())
        XCTAssertEqual(latest.iteration, 200)
        XCTAssertEqual(latest.tensors["w"]!.floats(), [3, 4])
        XCTAssertEqual(latest.metadata["consumed_samples"] as? Int, 1600)
        try store.prune(keep: 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("iter_0000100").path))
        XCTAssertEqual(try store.load(iteration: 200).tensors["w"]!.floats(), [3, 4])
    }

    func testCorruptionIsDetectedWithTheFileNamed() throws {
        let store = CheckpointDirectory(root: root)
        try store.save(iteration: 5, tensors: ["w": Tensor.ones([64])], metadata: [:])
        let shard = root.appendingPathComponent("iter_0000005/rank_00000.safetensors")
        var bytes = try Data(contentsOf: shard)
        bytes[bytes.count - 1] ^= 0xFF
        try bytes.write(to: shard)
        XCTAssertThrowsError(try store.load(iteration: 5)) { XCTAssertTrue("\($0)".contains("checksum differs"), "\($0)") }
        try bytes.prefix(bytes.count - 8).write(to: shard)
        XCTAssertThrowsError(try store.load(iteration: 5)) { XCTAssertTrue("\($0)".contains("bytes, but the checkpoint recorded"), "\($0)") }
        try "garbage".write(to: root.appendingPathComponent("latest_checkpointed_iteration.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try store.latestIteration()) { XCTAssertTrue("\($0)".contains("not an iteration number or 'release'"), "\($0)") }
        XCTAssertThrowsError(try store.load(iteration: 7)) { XCTAssertTrue("\($0)".contains("incomplete"), "\($0)") }
    }

    func testReleaseCheckpointsAsConversionsWriteThem() throws {
        let store = CheckpointDirectory(root: root)
        try store.save(iteration: 0, tensors: ["w": Tensor.ones([2])], metadata: [:], release: true)
        XCTAssertEqual(try String(contentsOf: root.appendingPathComponent("latest_checkpointed_iteration.txt"), encoding: .utf8), "release")
        XCTAssertEqual(try store.loadLatest()?.tensors["w"]?.floats(), [1, 1])
    }

    func testCRC32CKnownValue() {
        let bytes = Array("123456789".utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { CRC32C.checksum($0) }, 0xE306_9283)
    }
}
