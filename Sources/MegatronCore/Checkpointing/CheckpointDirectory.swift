import Foundation
import MegatronTensor

/// Megatron's checkpoint directory layout: `<save>/iter_0000100/` holding each rank's tensors as
/// `rank_00000.safetensors` plus `metadata.json`, and `<save>/latest_checkpointed_iteration.txt` naming the
/// newest complete one (an iteration number, or `release` for `<save>/release/`).
///
/// A kill or power loss at any instant leaves the tracker naming a complete checkpoint:
/// - a checkpoint is written under a hidden staging name (`.iter_0000100.partial`), its files and the directory are
///   synced, and it is renamed into place; the tracker is replaced (atomically, synced) only after that;
/// - re-saving an iteration that exists moves the old one aside (`.iter_0000100.old`) and removes it only once the
///   new one is in place; a reader that finds the tracker's directory missing reads the one set aside, and the
///   next writer's `repairInterruptedSave` puts it back;
/// - pruning renames a checkpoint to a hidden name before deleting it, so a half-deleted one is never visible.
///
/// One writer at a time: `SaveDirectoryLock` guards a directory across processes.
///
/// ```swift
/// let store = CheckpointDirectory(root: URL(fileURLWithPath: "checkpoints"))
/// var manifest = CheckpointManifest()
/// manifest.consumedSamples = 800
/// try store.save(iteration: 100, tensors: state, manifest: manifest)
/// let latest = try store.loadLatest()!   // latest.iteration, latest.tensors, try latest.metadata.manifest()
/// ```
public struct CheckpointDirectory {
    public let root: URL
    public static let trackerName = "latest_checkpointed_iteration.txt"
    public static let releaseName = "release"

    public init(root: URL) { self.root = root }

    public static func iterationName(_ iteration: Int) -> String { String(format: "iter_%07d", iteration) }

    /// The iteration of an `iter_<digits>` directory name, read numerically (`iter_10000000` follows `iter_9999999`).
    public static func iteration(ofDirectory name: String) -> Int? {
        guard name.hasPrefix("iter_"), name.count > 5, name.dropFirst(5).allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return nil
        }
        return Int(name.dropFirst(5))
    }

    /// Hidden names of a checkpoint's directory while it is written, replaced or deleted.
    static func stagingName(_ name: String) -> String { ".\(name).partial" }
    static func replacedName(_ name: String) -> String { ".\(name).old" }
    static func deletingName(_ name: String) -> String { ".\(name).deleting" }
    static func shardName(rank: Int) -> String { String(format: "rank_%05d.safetensors", rank) }

    /// Writes one rank's tensors and `manifest` (completed with the iteration, version and the shard's fingerprint)
    /// for `iteration`, publishes it, then points the tracker at it. A `release` checkpoint (what conversions write)
    /// goes to `release/`.
    public func save(iteration: Int, tensors: [String: Tensor], manifest: CheckpointManifest = CheckpointManifest(),
                     rank: Int = 0, release: Bool = false) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        let name = release ? Self.releaseName : Self.iterationName(iteration)
        let staging = root.appendingPathComponent(Self.stagingName(name))
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: false)
        let shardName = Self.shardName(rank: rank)
        try SafeTensors.write(tensors, to: staging.appendingPathComponent(shardName))
        var manifest = manifest
        manifest.iteration = iteration
        manifest.checkpointVersion = 3.0
        manifest.files = [shardName: try Self.fingerprint(staging.appendingPathComponent(shardName))]
        try AtomicFile.writeSynced(try CheckpointMetadata.encode(manifest), to: staging.appendingPathComponent("metadata.json"))
        try AtomicFile.syncDirectory(staging)
        try publish(staging, as: name)
        try AtomicFile.write(Data((release ? Self.releaseName : "\(iteration)").utf8), to: root.appendingPathComponent(Self.trackerName))
    }

    /// Renames the finished `staging` directory to `name`, never leaving a moment without a complete `name` or its
    /// set-aside copy.
    func publish(_ staging: URL, as name: String) throws {
        let fm = FileManager.default
        let final = root.appendingPathComponent(name), replaced = root.appendingPathComponent(Self.replacedName(name))
        if fm.fileExists(atPath: final.path) {
            try? fm.removeItem(at: replaced)
            try AtomicFile.move(final, to: replaced)
        }
        try AtomicFile.move(staging, to: final)
        try AtomicFile.syncDirectory(root)
        try? fm.removeItem(at: replaced)
    }

    /// Finishes or undoes what a killed writer left: a checkpoint set aside by an interrupted re-save goes back in
    /// place, staging, set-aside and half-deleted copies are removed. Call it holding the directory's lock.
    public func repairInterruptedSave() throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: root.path) else { return }
        for name in names where name.hasPrefix(".") {
            let url = root.appendingPathComponent(name)
            if name.hasSuffix(".old") {
                let original = root.appendingPathComponent(String(name.dropFirst().dropLast(4)))
                if fm.fileExists(atPath: original.path) { try fm.removeItem(at: url) } else { try AtomicFile.move(url, to: original) }
            } else if name.hasSuffix(".partial") || name.hasSuffix(".deleting") || name.hasPrefix(".\(Self.trackerName).tmp-") {
                try fm.removeItem(at: url)
            }
        }
        try AtomicFile.syncDirectory(root)
    }

    /// The checkpoint the tracker names, or nil when there is no tracker.
    public func latest() throws -> CheckpointName? {
        let tracker = root.appendingPathComponent(Self.trackerName)
        guard FileManager.default.fileExists(atPath: tracker.path) else { return nil }
        guard let data = try? Data(contentsOf: tracker) else {
            throw CheckpointError("\(tracker.path): cannot be read")
        }
        let value = String(decoding: data.prefix(64), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if value == Self.releaseName { return CheckpointName(directory: Self.releaseName, iteration: 0, isRelease: true) }
        guard data.count <= 64, !value.isEmpty, value.allSatisfy({ $0.isASCII && $0.isNumber }), let iteration = Int(value) else {
            throw CheckpointError("\(tracker.path): holds '\(value.prefix(40))', not an iteration number or 'release'")
        }
        return CheckpointName(directory: Self.iterationName(iteration), iteration: iteration, isRelease: false)
    }

    /// The iteration the tracker names (0 for `release`), or nil when there is no checkpoint yet.
    public func latestIteration() throws -> Int? { try latest()?.iteration }

    /// Reads `iteration`'s tensors and metadata, verifying each file's size and checksum first.
    public func load(iteration: Int, rank: Int = 0) throws -> LoadedCheckpoint {
        let name = CheckpointName(directory: Self.iterationName(iteration), iteration: iteration, isRelease: false)
        guard let directory = existingDirectory(name) else {
            throw CheckpointError("\(root.appendingPathComponent(name.directory).path): does not exist")
        }
        return try load(name, from: directory, rank: rank)
    }

    /// Loads the checkpoint the tracker names, or returns nil when there is no tracker.
    public func loadLatest(rank: Int = 0) throws -> LoadedCheckpoint? {
        guard let name = try latest() else { return nil }
        guard let directory = existingDirectory(name) else {
            throw CheckpointError("\(root.appendingPathComponent(Self.trackerName).path) names "
                + "\(name.isRelease ? "release" : "iteration \(name.iteration)"), but "
                + "\(root.appendingPathComponent(name.directory).path) does not exist")
        }
        return try load(name, from: directory, rank: rank)
    }

    func load(_ name: CheckpointName, from directory: URL, rank: Int) throws -> LoadedCheckpoint {
        if let megatron = try MegatronCheckpointFormat.loadIfMegatron(name, from: directory) { return megatron }
        let metaURL = directory.appendingPathComponent("metadata.json")
        guard let data = try? Data(contentsOf: metaURL) else {
            throw CheckpointError("\(metaURL.path): missing or unreadable; the checkpoint is incomplete")
        }
        let metadata = try CheckpointMetadata.decode(data, file: metaURL)
        let header = try metadata.decode(Header.self)
        guard name.isRelease ? header.iteration >= 0 : header.iteration == name.iteration else {
            throw metadata.invalid("iteration", "is \(header.iteration), but the directory is \(name.directory)")
        }
        let shardName = Self.shardName(rank: rank)
        guard let expected = header.files[shardName] else {
            throw metadata.invalid("files", "lists no \(shardName)")
        }
        let shard = directory.appendingPathComponent(shardName)
        let actual = try Self.fingerprint(shard)
        guard actual.bytes == expected.bytes else {
            throw CheckpointError("\(shard.path): \(actual.bytes) bytes, but the checkpoint recorded \(expected.bytes)")
        }
        guard actual.crc32c == expected.crc32c else {
            throw CheckpointError("\(shard.path): checksum differs from the one recorded; the file is corrupt")
        }
        return LoadedCheckpoint(name: name, directory: directory, tensors: try SafeTensors.read(shard).tensors, metadata: metadata)
    }

    /// The directory of `name`, or the copy an interrupted re-save set aside; nil when neither exists.
    func existingDirectory(_ name: CheckpointName) -> URL? {
        [name.directory, Self.replacedName(name.directory)].map(root.appendingPathComponent).first { url in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }

    /// The `iter_*` checkpoints present, by iteration.
    public func iterations() throws -> [Int] {
        try FileManager.default.contentsOfDirectory(atPath: root.path).compactMap(Self.iteration(ofDirectory:)).sorted()
    }

    /// Keeps the newest `keep` checkpoints at or below `newest` (the iteration just written) and deletes older
    /// ones; never the one the tracker names. Checkpoints above `newest` are left alone: they belong to a run that
    /// was resumed from an earlier iteration, and saves replace them as training reaches them again.
    public func prune(keep: Int, newest: Int) throws {
        precondition(keep > 0, "prune keeps at least one checkpoint")
        let protected = try latest()?.iteration
        let candidates = try iterations().filter { $0 <= newest }
        for iteration in candidates.dropLast(keep) where iteration != protected && iteration != newest {
            try remove(iteration)
        }
    }

    /// Deletes the checkpoint of `iteration`, unless the tracker names it.
    public func delete(iteration: Int) throws {
        guard try latest()?.iteration != iteration else { return }
        try remove(iteration)
    }

    /// Renames `iteration`'s directory aside before deleting it, so that a kill midway leaves no half checkpoint
    /// under its name.
    private func remove(_ iteration: Int) throws {
        let name = Self.iterationName(iteration)
        let doomed = root.appendingPathComponent(Self.deletingName(name))
        try AtomicFile.move(root.appendingPathComponent(name), to: doomed)
        try FileManager.default.removeItem(at: doomed)
    }

    /// A file's size and CRC-32C, as metadata.json records them.
    public struct Fingerprint: Codable, Equatable {
        public var bytes: Int
        public var crc32c: Int
    }

    /// The members every checkpoint's metadata.json has.
    struct Header: Decodable {
        var iteration: Int
        var checkpoint_version: Double
        var files: [String: Fingerprint]
    }

    static func fingerprint(_ url: URL) throws -> Fingerprint {
        guard let data = try? Data(contentsOf: url, options: .alwaysMapped) else {
            throw CheckpointError("\(url.path): missing")
        }
        return Fingerprint(bytes: data.count, crc32c: Int(data.withUnsafeBytes { CRC32C.checksum($0) }))
    }
}

/// A checkpoint's place in a directory: `iter_0000100` (iteration 100) or `release` (iteration 0).
public struct CheckpointName: Equatable {
    public let directory: String
    public let iteration: Int
    public let isRelease: Bool
}

/// A checkpoint read and verified: its tensors (this rank's shard) and metadata.
public struct LoadedCheckpoint {
    public let name: CheckpointName
    /// Where it was read from, for messages.
    public let directory: URL
    public let tensors: [String: Tensor]
    public let metadata: CheckpointMetadata
    /// The format, when Megatron-LM wrote it (`torch_dist`, `torch`): weights, iteration, progress and, where its
    /// layout allows, optimizer and scheduler state (`optimizer.*` tensors); its RNG state is not carried.
    public var writtenByMegatron: String? = nil
    /// Why the optimizer state of a checkpoint Megatron-LM wrote cannot be resumed from, when it holds some.
    public var optimizerNotCarried: String? = nil

    /// The shapes of the checkpoint's tensors (model and optimizer), whether read (`tensors`) or, for a sharded
    /// checkpoint opened for reading by boxes, as its metadata describes them.
    public var shapes: [String: [Int]] { recordedShapes ?? tensors.mapValues(\.shape) }
    var recordedShapes: [String: [Int]]? = nil

    public var iteration: Int { name.iteration }
    public var isRelease: Bool { name.isRelease }
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
