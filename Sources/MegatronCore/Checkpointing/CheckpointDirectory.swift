import Foundation
import MegatronTensor

/// Megatron's checkpoint directory layout: `<save>/iter_0000100/` holding each rank's tensors as
/// `rank_00000.safetensors` plus `metadata.json`, and `<save>/latest_checkpointed_iteration.txt` naming the
/// newest complete one.
///
/// Saves are atomic: the iteration directory is written under a temporary name, its files are synced and it is
/// renamed into place, and only then is the tracker file updated. A crash leaves the previous checkpoint usable.
///
/// ```swift
/// let store = CheckpointDirectory(root: URL(fileURLWithPath: "checkpoints"))
/// try store.save(iteration: 100, tensors: state, metadata: ["consumed_samples": 800])
/// let (iteration, tensors, metadata) = try store.loadLatest()!
/// ```
public struct CheckpointDirectory {
    public let root: URL
    public static let trackerName = "latest_checkpointed_iteration.txt"

    public init(root: URL) { self.root = root }

    public static func iterationName(_ iteration: Int) -> String { String(format: "iter_%07d", iteration) }

    /// Writes one rank's tensors and the metadata (JSON-serializable values) for `iteration`, then the tracker.
    /// A `release` checkpoint (what conversions write) goes to `release/` and the tracker says `release`.
    public func save(iteration: Int, tensors: [String: Tensor], metadata: [String: Any], rank: Int = 0,
                     release: Bool = false) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        let name = release ? "release" : Self.iterationName(iteration)
        let final = root.appendingPathComponent(name)
        let staging = root.appendingPathComponent(".\(name).partial")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        let shardName = String(format: "rank_%05d.safetensors", rank)
        try SafeTensors.write(tensors, to: staging.appendingPathComponent(shardName))
        var meta = metadata
        meta["iteration"] = iteration
        meta["checkpoint_version"] = 3.0
        meta["files"] = [shardName: try Self.fingerprint(staging.appendingPathComponent(shardName))]
        let json = try JSONSerialization.data(withJSONObject: meta, options: [.sortedKeys, .prettyPrinted])
        try AtomicFile.write(json, to: staging.appendingPathComponent("metadata.json"))
        if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
        guard rename(staging.path, final.path) == 0 else {
            throw CheckpointError("\(final.path): cannot move the finished checkpoint into place")
        }
        try AtomicFile.write(Data((release ? "release" : "\(iteration)").utf8), to: root.appendingPathComponent(Self.trackerName))
    }

    /// The iteration the tracker names (0 for `release`), or nil when there is no checkpoint yet.
    public func latestIteration() throws -> Int? { try latest()?.iteration }

    /// The tracker's checkpoint: its directory name and iteration.
    func latest() throws -> (directory: String, iteration: Int)? {
        let tracker = root.appendingPathComponent(Self.trackerName)
        guard let text = try? String(contentsOf: tracker, encoding: .utf8) else { return nil }
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if value == "release" { return ("release", 0) }
        guard let iteration = Int(value) else {
            throw CheckpointError("\(tracker.path): holds '\(text)', not an iteration number or 'release'")
        }
        return (Self.iterationName(iteration), iteration)
    }

    /// Reads `iteration`'s tensors and metadata, verifying each file's size and checksum first.
    public func load(iteration: Int, rank: Int = 0) throws -> (tensors: [String: Tensor], metadata: [String: Any]) {
        try load(directory: Self.iterationName(iteration), rank: rank)
    }

    func load(directory name: String, rank: Int) throws -> (tensors: [String: Tensor], metadata: [String: Any]) {
        let directory = root.appendingPathComponent(name)
        let metaURL = directory.appendingPathComponent("metadata.json")
        guard let data = try? Data(contentsOf: metaURL),
              let metadata = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw CheckpointError("\(metaURL.path): missing or unreadable; the checkpoint is incomplete") }
        let shardName = String(format: "rank_%05d.safetensors", rank)
        let shard = directory.appendingPathComponent(shardName)
        guard let files = metadata["files"] as? [String: [String: Any]], let expected = files[shardName] else {
            throw CheckpointError("\(metaURL.path): lists no file \(shardName)")
        }
        let actual = try Self.fingerprint(shard)
        guard actual["bytes"] as? Int == expected["bytes"] as? Int else {
            throw CheckpointError("\(shard.path): \(actual["bytes"]!) bytes, but the checkpoint recorded \(expected["bytes"]!)")
        }
        guard actual["crc32c"] as? Int == expected["crc32c"] as? Int else {
            throw CheckpointError("\(shard.path): checksum differs from the one recorded; the file is corrupt")
        }
        return (try SafeTensors.read(shard).tensors, metadata)
    }

    /// Loads the checkpoint the tracker names, or returns nil when there is none.
    public func loadLatest(rank: Int = 0) throws -> (iteration: Int, tensors: [String: Tensor], metadata: [String: Any])? {
        guard let (name, iteration) = try latest() else { return nil }
        let (tensors, metadata) = try load(directory: name, rank: rank)
        return (iteration, tensors, metadata)
    }

    /// Deletes all but the newest `keep` complete checkpoints.
    public func prune(keep: Int) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: root.path)
            .filter { $0.hasPrefix("iter_") }.sorted()
        for name in names.dropLast(keep) { try FileManager.default.removeItem(at: root.appendingPathComponent(name)) }
    }

    static func fingerprint(_ url: URL) throws -> [String: Any] {
        guard let data = try? Data(contentsOf: url, options: .alwaysMapped) else {
            throw CheckpointError("\(url.path): missing")
        }
        return ["bytes": data.count, "crc32c": Int(data.withUnsafeBytes { CRC32C.checksum($0) })]
    }
}

/// CRC-32C (Castagnoli), the checksum TensorBoard's records and our checkpoints use.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
