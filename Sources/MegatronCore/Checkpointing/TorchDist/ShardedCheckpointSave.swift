import Foundation
import MegatronParallel
import MegatronTensor

extension MegatronCheckpointFormat {
    /// Where one rank's file lies and what it holds, passed to rank 0 through the staging directory.
    struct RankFileIndex: Codable {
        var entries: [DistributedCheckpoint.StorageEntry]
        var file: String
        var fingerprint: CheckpointDirectory.Fingerprint
    }

    /// A sharded torch_dist save, called by every rank of `world` with its own `chunks`: each rank writes
    /// `__<rank>_0.distcp` into the staging directory at once; after all have written, rank 0 writes the common
    /// state (`manifest` with every file's size and checksum, args) into `__0_1.distcp`, the `.metadata` of every
    /// rank's chunks and `metadata.json`, renames the directory into place and updates the tracker last. Every rank
    /// returns once the checkpoint is complete; a failure on any rank fails the save on every rank, leaving the
    /// previous checkpoint named by the tracker.
    ///
    /// ```swift
    /// try MegatronCheckpointFormat.saveSharded(to: store, iteration: 10, chunks: mine, world: world, device: .cpu, manifest: manifest)
    /// ```
    public static func saveSharded(to store: CheckpointDirectory, iteration: Int, chunks: [DistributedCheckpoint.Chunk], world: Communicator,
                                   device: Device = .cpu, manifest: CheckpointManifest, megatronArgs: [(String, PickleValue)] = [],
                                   megatronCommon: [(String, PickleValue)] = []) throws {
        let job = try prepareSharded(to: store, iteration: iteration, chunks: chunks, world: world, device: device, manifest: manifest,
                                     megatronArgs: megatronArgs, megatronCommon: megatronCommon)
        try agree(world, device) { try job.run() }
    }

    /// The collective first step of a sharded save (rank 0 makes the staging directory, every rank waits for it)
    /// and the rest, which needs no collective: `ShardedSaveJob.run`, on a background thread for `--async-save`.
    /// `objects`: this rank's own non-tensor state (Megatron's sharded objects, keys unique over the ranks).
    /// `megatronCommon`: common-state entries for Megatron-LM's loader (`MegatronOptimizerCommon`).
    public static func prepareSharded(to store: CheckpointDirectory, iteration: Int, chunks: [DistributedCheckpoint.Chunk],
                                      objects: [(String, PickleValue)] = [], world: Communicator,
                                      device: Device = .cpu, manifest: CheckpointManifest,
                                      megatronArgs: [(String, PickleValue)] = [],
                                      megatronCommon: [(String, PickleValue)] = []) throws -> ShardedSaveJob {
        let name = CheckpointDirectory.iterationName(iteration)
        let staging = store.root.appendingPathComponent(CheckpointDirectory.stagingName(name))
        try agree(world, device) {
            guard world.rank == 0 else { return }
            try FileManager.default.createDirectory(at: store.root, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: staging)
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: false)
        }
        return ShardedSaveJob(store: store, name: name, staging: staging, rank: world.rank, ranks: world.size, iteration: iteration,
                              chunks: chunks, objects: objects, manifest: manifest, megatronArgs: megatronArgs,
                              megatronCommon: megatronCommon)
    }

    static func indexName(_ rank: Int) -> String { ".__\(rank)_0.index.json" }
    static func failureName(_ rank: Int) -> String { ".__\(rank)_0.failed" }

    /// Rank 0's last step: the common state, the `.metadata` and `metadata.json`, the rename, the tracker.
    static func finalize(_ store: CheckpointDirectory, name: String, staging: URL, ranks: Int, iteration: Int, manifest: CheckpointManifest,
                         megatronArgs: [(String, PickleValue)], megatronCommon: [(String, PickleValue)]) throws {
        var entries: [DistributedCheckpoint.StorageEntry] = []
        var manifest = manifest
        manifest.iteration = iteration
        manifest.checkpointVersion = 3.0
        manifest.files = [:]
        for rank in 0..<ranks {
            let url = try waitForIndex(of: rank, in: staging)
            let index = try JSONDecoder().decode(RankFileIndex.self, from: Data(contentsOf: url))
            entries += index.entries
            manifest.files?[index.file] = index.fingerprint
            try FileManager.default.removeItem(at: url)
        }
        guard let config = manifest.modelConfig else { throw CheckpointError("a torch_dist checkpoint needs the model's description") }
        let objects = [(DistributedCheckpoint.commonKey, PickleValue.list([try commonState(manifest, megatronArgs: megatronArgs,
                                                                                           megatronCommon: megatronCommon)]))]
            + MegatronGPTLayout.extraStateObjects(config).sorted { $0.key < $1.key }
        entries = try DistributedCheckpoint.writeFile("__0_1.distcp", objects: objects, chunks: [], in: staging) + entries
        try DistributedCheckpoint.writeMetadata(entries, to: staging)
        try AtomicFile.syncDirectory(staging)
        try store.publish(staging, as: name)
        try AtomicFile.write(Data("\(iteration)".utf8), to: store.root.appendingPathComponent(CheckpointDirectory.trackerName))
    }

    /// Rank `rank`'s index file once it has written it (polled: the ranks' writers meet through the staging
    /// directory, so that a background write needs no collective beside the training's). A rank that failed
    /// leaves a marker instead, and a rank silent for `timeout` seconds fails the save.
    static func waitForIndex(of rank: Int, in staging: URL, timeout: Double = 1800) throws -> URL {
        let url = staging.appendingPathComponent(indexName(rank))
        let start = Date()
        while !FileManager.default.fileExists(atPath: url.path) {
            if let why = try? String(contentsOf: staging.appendingPathComponent(failureName(rank)), encoding: .utf8) {
                throw CheckpointError("\(staging.path): rank \(rank) failed to write its shard: \(why)")
            }
            guard Date().timeIntervalSince(start) < timeout else {
                throw CheckpointError("\(staging.path): rank \(rank) wrote no shard within \(Int(timeout)) s")
            }
            usleep(2000)
        }
        return url
    }

    /// Runs `step` on this rank, then waits for every rank's: throws this rank's error, or names the ranks that
    /// failed, so that no rank goes on to a step another could not reach.
    public static func agree(_ world: Communicator, _ device: Device, _ step: () throws -> Void) throws {
        var failure: Error?
        do { try step() } catch { failure = error }
        let failed = Tensor(shape: [1], values: [failure == nil ? 0 : 1]).to(device)
        try world.allReduce(failed, op: .sum).wait()
        if let failure { throw failure }
        let count = Int(failed.to(.cpu).floats()[0])
        guard count == 0 else { throw CheckpointError("the sharded save failed on \(count) other rank(s); the previous checkpoint stays") }
    }
}

/// What one rank does of a sharded save once its state is copied into `chunks`: it writes its file and index into
/// the staging directory; rank 0 then waits for every rank's index and finalizes (common state, `.metadata`,
/// `metadata.json`, rename, tracker last). No collective: it may run on a background thread (`--async-save`).
public struct ShardedSaveJob {
    let store: CheckpointDirectory
    public let name: String
    let staging: URL
    let rank: Int, ranks: Int, iteration: Int
    let chunks: [DistributedCheckpoint.Chunk]
    let objects: [(String, PickleValue)]
    let manifest: CheckpointManifest
    let megatronArgs: [(String, PickleValue)]
    let megatronCommon: [(String, PickleValue)]

    /// The bytes of tensor data this rank writes (its shard: what it holds while saving).
    public var shardBytes: Int { chunks.reduce(0) { $0 + $1.tensor.count * $1.tensor.dtype.byteSize } }

    public func run() throws {
        let file = "__\(rank)_0.distcp"
        do {
            let entries = try DistributedCheckpoint.writeFile(file, objects: objects, chunks: chunks, in: staging)
            let index = MegatronCheckpointFormat.RankFileIndex(
                entries: entries, file: file, fingerprint: try CheckpointDirectory.fingerprint(staging.appendingPathComponent(file)))
            // Renamed into place, not written there: rank 0 polls for the name and must never read a half-written index.
            try AtomicFile.write(try JSONEncoder().encode(index), to: staging.appendingPathComponent(MegatronCheckpointFormat.indexName(rank)))
        } catch {
            try? AtomicFile.write(Data("\(error)".utf8), to: staging.appendingPathComponent(MegatronCheckpointFormat.failureName(rank)))
            throw error
        }
        guard rank == 0 else { return }
        try MegatronCheckpointFormat.finalize(store, name: name, staging: staging, ranks: ranks, iteration: iteration, manifest: manifest,
                                              megatronArgs: megatronArgs, megatronCommon: megatronCommon)
    }
}

extension MegatronCheckpointFormat {
    /// A torch_dist checkpoint this build wrote, opened for reading by boxes: its manifest (no tensors read yet) and
    /// a reader that checks each `.distcp` file's recorded size and checksum when it first opens it. Nil for other
    /// formats and for checkpoints Megatron-LM wrote.
    public static func openSharded(_ name: CheckpointName, from directory: URL) throws -> (checkpoint: LoadedCheckpoint, reader: DistributedCheckpointReader)? {
        guard DistributedCheckpoint.isDistributedCheckpoint(directory) else { return nil }
        let reader = try DistributedCheckpointReader(directory: directory)
        guard let ours = try reader.common()[manifestKey]?.stringValue else { return nil }
        let metadata = try CheckpointMetadata.decode(Data(ours.utf8), file: directory.appendingPathComponent(".metadata"))
        reader.expectedFiles = try metadata.decode(RecordedFiles.self).files
        var checkpoint = LoadedCheckpoint(name: name, directory: directory, tensors: [:], metadata: metadata)
        var shapes: [String: [Int]] = [:]
        for key in reader.tensorKeys where !key.hasPrefix("optimizer.") { shapes[key] = reader.shape(of: key) }
        checkpoint.recordedShapes = Dictionary(uniqueKeysWithValues: MegatronGPTLayout.unshardedShapes(shapes).map { ("model." + $0.key, $0.value) })
        return (checkpoint, reader)
    }

    struct RecordedFiles: Decodable { var files: [String: CheckpointDirectory.Fingerprint]? }
}

extension CheckpointDirectory {
    /// The checkpoint the tracker names, if it is a torch_dist one this build wrote, opened for reading by boxes
    /// (`MegatronCheckpointFormat.openSharded`); nil otherwise (read it with `loadLatest`).
    public func openLatestSharded() throws -> (checkpoint: LoadedCheckpoint, reader: DistributedCheckpointReader)? {
        guard let name = try latest(), let directory = existingDirectory(name) else { return nil }
        return try MegatronCheckpointFormat.openSharded(name, from: directory)
    }
}
