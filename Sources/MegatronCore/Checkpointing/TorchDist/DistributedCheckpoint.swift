import Foundation
import MegatronTensor

/// PyTorch Distributed Checkpoint as Megatron's `--ckpt-format torch_dist` lays it out: a `.metadata` pickle
/// (each tensor's global size, dtype and chunks; where each chunk and object lies), `__<rank>_<n>.distcp` files of
/// concatenated `torch.save` archives, optionally a legacy `common.pt`, and `metadata.json` naming the backend,
/// written last.
///
/// ```swift
/// try DistributedCheckpoint.write(DistributedCheckpoint.Contents(tensors: state, common: common), to: dir)
/// let loaded = try DistributedCheckpoint.read(dir)   // loaded.tensors: whole (global) tensors by key
/// ```
public enum DistributedCheckpoint {
    /// What a checkpoint holds, every tensor whole.
    public struct Contents {
        /// Tensors by key (`decoder.layers.mlp.linear_fc1.weight`), at their global shape.
        public var tensors: [String: Tensor]
        /// Objects by unique key (`…_extra_state/shard_0_2`), as the one-element list Megatron saves.
        public var objects: [String: PickleValue]
        /// The non-sharded state: args, iteration, checkpoint_version, scheduler...
        public var common: PickleValue

        public init(tensors: [String: Tensor], objects: [String: PickleValue] = [:], common: PickleValue) {
            (self.tensors, self.objects, self.common) = (tensors, objects, common)
        }
    }

    public static let metadataJSON = Data(#"{"sharded_backend": "torch_dist", "sharded_backend_version": 1}"#.utf8)
    static let commonKey = "common_state/shard_0_1"
    static let dataFile = "__0_0.distcp"

    /// Whether `directory` holds a torch_dist checkpoint (Megatron's test: metadata.json names the backend).
    public static func isDistributedCheckpoint(_ directory: URL) -> Bool {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("metadata.json")),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return json["sharded_backend"] as? String == "torch_dist"
    }

    // MARK: Write

    /// One item of a `.distcp` file: where it lies, and for a tensor chunk its box, dtype and tensor's global shape.
    public struct StorageEntry: Codable, Equatable, Sendable {
        public var fqn: String
        /// The chunk's box in the global tensor; nil for a byte object.
        public var offsets: [Int]?
        public var sizes: [Int]?
        public var globalShape: [Int]?
        public var dtype: String?
        public var file: String
        public var offset: Int
        public var length: Int
    }

    /// One tensor chunk to write: `tensor` is the `box` of the tensor `key`, whose whole shape is `globalShape`.
    public struct Chunk {
        public var key: String
        public var globalShape: [Int]
        public var box: ShardBox
        public var tensor: Tensor

        public init(key: String, globalShape: [Int], box: ShardBox, tensor: Tensor) {
            (self.key, self.globalShape, self.box, self.tensor) = (key, globalShape, box, tensor)
        }
    }

    /// Writes `contents` into the existing `directory` as one rank's file (each tensor one chunk covering it whole),
    /// the `.metadata`, then `metadata.json`; every file synced.
    public static func write(_ contents: Contents, to directory: URL) throws {
        let chunks = contents.tensors.sorted { $0.key < $1.key }.map { key, t in
            Chunk(key: key, globalShape: t.shape, box: ShardBox(whole: t.shape), tensor: t)
        }
        let objects = [(commonKey, PickleValue.list([contents.common]))] + contents.objects.sorted { $0.key < $1.key }
        let entries = try writeFile(dataFile, objects: objects, chunks: chunks, in: directory)
        try writeMetadata(entries, to: directory)
    }

    /// Writes one `.distcp` file named `file` in `directory`: `objects` (each a `torch.save` archive of its value),
    /// then `chunks` (each a `torch.save` archive of its tensor), as DCP orders a file's items; synced. Returns where
    /// each item lies, for the `.metadata`.
    public static func writeFile(_ file: String, objects: [(String, PickleValue)], chunks: [Chunk], in directory: URL) throws -> [StorageEntry] {
        var data = Data()
        var entries: [StorageEntry] = []
        for (key, value) in objects {
            let bytes = try TorchSave.write(value)
            entries.append(StorageEntry(fqn: key, file: file, offset: data.count, length: bytes.count))
            data.append(bytes)
        }
        for chunk in chunks {
            guard let dtype = chunk.tensor.dtype.torchName else { throw CheckpointError("dtype \(chunk.tensor.dtype) has no torch name") }
            precondition(chunk.tensor.shape == chunk.box.sizes, "\(chunk.key): a chunk of \(chunk.tensor.shape) for box \(chunk.box)")
            let bytes = try TorchSave.write(.tensor(chunk.tensor.to(.cpu).madeContiguous()))
            entries.append(StorageEntry(fqn: chunk.key, offsets: chunk.box.offsets, sizes: chunk.box.sizes, globalShape: chunk.globalShape,
                                        dtype: dtype.rawValue, file: file, offset: data.count, length: bytes.count))
            data.append(bytes)
        }
        try AtomicFile.writeSynced(data, to: directory.appendingPathComponent(file))
        return entries
    }

    /// Writes the `.metadata` describing every rank's `entries` (each tensor's global size, dtype and chunks; where
    /// each chunk and object lies), then `metadata.json`, which marks the checkpoint complete.
    public static func writeMetadata(_ entries: [StorageEntry], to directory: URL) throws {
        var storage: [PickleValue.Pair] = []
        var tensors: [String: [StorageEntry]] = [:]
        var described: [PickleValue.Pair] = []
        for entry in entries {
            storage.append(.init(metadataIndex(entry.fqn, offsets: entry.offsets), storageInfo(entry)))
            if entry.offsets == nil {
                described.append(.init(.string(entry.fqn), newObject("metadata", "BytesStorageMetadata", .dict([]))))
            } else {
                tensors[entry.fqn, default: []].append(entry)
            }
        }
        for (key, chunks) in tensors.sorted(by: { $0.key < $1.key }) {
            described.append(.init(.string(key), try tensorMetadata(chunks)))
        }
        let metadata = newObject("metadata", "Metadata", .stringDict([
            ("state_dict_metadata", .dict(described)), ("planner_data", .none), ("storage_data", .dict(storage)),
        ]))
        try AtomicFile.writeSynced(try PickleWriter.write(metadata), to: directory.appendingPathComponent(".metadata"))
        try AtomicFile.writeSynced(metadataJSON, to: directory.appendingPathComponent("metadata.json"))
    }

    static func newObject(_ module: String, _ name: String, _ state: PickleValue) -> PickleValue {
        .object(PickleObject(PickleGlobal("\(PickleGlobals.dcp).\(module)", name), state: state, isNewObject: true))
    }

    static func size(_ dims: [Int]) -> PickleValue {
        .object(PickleObject(PickleGlobals.torchSize, arguments: [.tuple(dims.map(PickleValue.int))]))
    }

    static func metadataIndex(_ fqn: String, offsets: [Int]?) -> PickleValue {
        newObject("metadata", "MetadataIndex", .stringDict([("fqn", .string(fqn)), ("offset", offsets.map(size) ?? .none), ("index", .none)]))
    }

    static func storageInfo(_ entry: StorageEntry) -> PickleValue {
        newObject("filesystem", "_StorageInfo", .stringDict([
            ("relative_path", .string(entry.file)), ("offset", .int(entry.offset)), ("length", .int(entry.length)),
        ]))
    }

    /// The TensorStorageMetadata of one tensor from its chunks' entries (each naming the same shape and dtype).
    static func tensorMetadata(_ chunks: [StorageEntry]) throws -> PickleValue {
        let first = chunks[0]
        guard let shape = first.globalShape, let dtype = first.dtype,
              chunks.allSatisfy({ $0.globalShape == shape && $0.dtype == dtype }) else {
            throw CheckpointError("\(first.fqn): its chunks disagree on the tensor's shape or dtype")
        }
        let properties = newObject("metadata", "TensorProperties", .tuple([
            .global(PickleGlobal("torch", dtype)),
            .object(PickleObject(PickleGlobals.getLayout, arguments: [.string("torch.strided")])), .bool(false),
            .object(PickleObject(PickleGlobal("\(PickleGlobals.dcp).metadata", "_MEM_FORMAT_ENCODING"), arguments: [.int(0)])),
            .bool(false),
        ]))
        let described = chunks.sorted { ($0.offsets ?? []).lexicographicallyPrecedes($1.offsets ?? []) }.map { chunk in
            newObject("metadata", "ChunkStorageMetadata", .stringDict([("offsets", size(chunk.offsets ?? [])), ("sizes", size(chunk.sizes ?? []))]))
        }
        return newObject("metadata", "TensorStorageMetadata", .stringDict([
            ("properties", properties), ("size", size(shape)), ("chunks", .list(described)),
        ]))
    }

    // MARK: Read

    /// Reads every tensor (assembled from its chunks), object and the common state of `directory`.
    public static func read(_ directory: URL) throws -> Contents {
        let reader = try DistributedCheckpointReader(directory: directory)
        var contents = Contents(tensors: [:], common: try reader.common())
        for key in reader.tensorKeys { contents.tensors[key] = try reader.read(key, box: ShardBox(whole: reader.shape(of: key)!)) }
        for key in reader.objectKeys where key != commonKey { contents.objects[key] = try reader.object(key) }
        return contents
    }
}

extension PickleValue {
    /// An object's BUILD state whatever its form (a dict, or a tuple given to `__setstate__`).
    var objectState: PickleValue? {
        if case .object(let o) = self { return o.state }
        return nil
    }
}
