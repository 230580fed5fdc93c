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

    /// Writes `contents` into the existing `directory` as one rank's file (each tensor one chunk covering it whole),
    /// the `.metadata`, then `metadata.json`; every file synced.
    public static func write(_ contents: Contents, to directory: URL) throws {
        var file = Data()
        var storage: [PickleValue.Pair] = []
        var entries: [PickleValue.Pair] = []
        func item(_ bytes: Data, fqn: String, offsets: [Int]?) {
            storage.append(.init(metadataIndex(fqn, offsets: offsets), storageInfo(offset: file.count, length: bytes.count)))
            file.append(bytes)
        }
        // Objects first, then tensors, as DCP orders a file's items.
        let objects = [(commonKey, PickleValue.list([contents.common]))] + contents.objects.sorted { $0.key < $1.key }
        for (key, value) in objects {
            item(try TorchSave.write(value), fqn: key, offsets: nil)
            entries.append(.init(.string(key), newObject("metadata", "BytesStorageMetadata", .dict([]))))
        }
        for (key, tensor) in contents.tensors.sorted(by: { $0.key < $1.key }) {
            let zeros = [Int](repeating: 0, count: tensor.rank)
            item(try TorchSave.write(.tensor(tensor)), fqn: key, offsets: zeros)
            entries.append(.init(.string(key), try tensorMetadata(tensor)))
        }
        let metadata = newObject("metadata", "Metadata", .stringDict([
            ("state_dict_metadata", .dict(entries)), ("planner_data", .none), ("storage_data", .dict(storage)),
        ]))
        try AtomicFile.writeSynced(file, to: directory.appendingPathComponent(dataFile))
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

    static func storageInfo(offset: Int, length: Int) -> PickleValue {
        newObject("filesystem", "_StorageInfo", .stringDict([
            ("relative_path", .string(dataFile)), ("offset", .int(offset)), ("length", .int(length)),
        ]))
    }

    static func tensorMetadata(_ t: Tensor) throws -> PickleValue {
        guard let dtype = t.dtype.torchName else { throw CheckpointError("dtype \(t.dtype) has no torch name") }
        let properties = newObject("metadata", "TensorProperties", .tuple([
            .global(PickleGlobal("torch", dtype.rawValue)),
            .object(PickleObject(PickleGlobals.getLayout, arguments: [.string("torch.strided")])), .bool(false),
            .object(PickleObject(PickleGlobal("\(PickleGlobals.dcp).metadata", "_MEM_FORMAT_ENCODING"), arguments: [.int(0)])),
            .bool(false),
        ]))
        let chunk = newObject("metadata", "ChunkStorageMetadata", .stringDict([
            ("offsets", size([Int](repeating: 0, count: t.rank))), ("sizes", size(t.shape)),
        ]))
        return newObject("metadata", "TensorStorageMetadata", .stringDict([
            ("properties", properties), ("size", size(t.shape)), ("chunks", .list([chunk])),
        ]))
    }

    // MARK: Read

    /// Reads every tensor (assembled from its chunks), object and the common state of `directory`.
    public static func read(_ directory: URL) throws -> Contents {
        let metadataURL = directory.appendingPathComponent(".metadata")
        guard let metadataBytes = try? Data(contentsOf: metadataURL) else {
            throw CheckpointError("\(metadataURL.path): missing or unreadable; the torch_dist checkpoint is incomplete")
        }
        let metadata: PickleValue
        do { metadata = try PickleReader.read(metadataBytes) } catch let error as PickleError {
            throw CheckpointError("\(metadataURL.path): \(error.description)")
        }
        func invalid(_ why: String) -> CheckpointError { CheckpointError("\(metadataURL.path): \(why)") }
        guard let entries = metadata.attribute("state_dict_metadata")?.pairs, let storage = metadata.attribute("storage_data")?.pairs else {
            throw invalid("is not a DCP Metadata (no state_dict_metadata / storage_data)")
        }
        var locations: [String: (file: String, offset: Int, length: Int)] = [:]
        for pair in storage {
            guard let fqn = pair.key.attribute("fqn")?.stringValue, let path = pair.value.attribute("relative_path")?.stringValue,
                  let offset = pair.value.attribute("offset")?.intValue, let length = pair.value.attribute("length")?.intValue,
                  !path.contains("/"), offset >= 0, length >= 0
            else { throw invalid("a storage_data entry of unexpected form") }
            locations[locationKey(fqn, pair.key.attribute("offset")?.intArray)] = (path, offset, length)
        }
        var files: [String: Data] = [:]
        func slice(_ fqn: String, _ offsets: [Int]?) throws -> (Data, String) {
            guard let at = locations[locationKey(fqn, offsets)] else { throw invalid("\(fqn) has no storage entry") }
            if files[at.file] == nil {
                let url = directory.appendingPathComponent(at.file)
                guard let data = try? Data(contentsOf: url, options: .alwaysMapped) else { throw CheckpointError("\(url.path): missing") }
                files[at.file] = data
            }
            let data = files[at.file]!
            guard at.offset + at.length <= data.count else {
                throw CheckpointError("\(directory.appendingPathComponent(at.file).path): \(fqn) lies past the end of the file")
            }
            return (data.subdata(in: at.offset..<(at.offset + at.length)), "\(directory.appendingPathComponent(at.file).path) (\(fqn))")
        }
        var contents = Contents(tensors: [:], common: .none)
        for entry in entries {
            guard let fqn = entry.key.stringValue, case .object(let o) = entry.value else { throw invalid("an entry of unexpected form") }
            switch o.callable.name {
            case "TensorStorageMetadata": contents.tensors[fqn] = try assemble(fqn, entry.value, slice: slice, invalid: invalid)
            case "BytesStorageMetadata":
                let (bytes, source) = try slice(fqn, nil)
                contents.objects[fqn] = try TorchSave.read(bytes, source: source)
            default: throw invalid("\(fqn) is described by \(o.callable), not tensor or bytes metadata")
            }
        }
        let legacyCommon = directory.appendingPathComponent("common.pt")
        if FileManager.default.fileExists(atPath: legacyCommon.path) {
            contents.common = try TorchSave.read(Data(contentsOf: legacyCommon), source: legacyCommon.path)
        } else if let common = contents.objects.removeValue(forKey: commonKey)?[0] {
            contents.common = common
        } else {
            throw invalid("holds no \(commonKey) and the directory no common.pt: args and iteration are missing")
        }
        return contents
    }

    static func locationKey(_ fqn: String, _ offsets: [Int]?) -> String {
        fqn + "@" + (offsets?.map(String.init).joined(separator: ",") ?? "bytes")
    }

    /// The tensor `fqn` whole, its chunks copied into their boxes.
    static func assemble(_ fqn: String, _ meta: PickleValue, slice: (String, [Int]?) throws -> (Data, String),
                         invalid: (String) -> CheckpointError) throws -> Tensor {
        guard let shape = meta.attribute("size")?.intArray, shape.allSatisfy({ $0 >= 0 }),
              let dtypeValue = meta.attribute("properties")?.objectState?[0],
              let name = PickleGlobals.dtype(dtypeValue), let dtype = DType(torch: name),
              let chunks = meta.attribute("chunks")?.elements
        else { throw invalid("\(fqn): tensor metadata of unexpected form (or a dtype this build does not hold)") }
        let whole = Tensor(zeros: shape, dtype: dtype)
        var covered = 0
        for chunk in chunks {
            guard let offsets = chunk.attribute("offsets")?.intArray, let sizes = chunk.attribute("sizes")?.intArray,
                  offsets.count == shape.count, sizes.count == shape.count,
                  zip(zip(offsets, sizes), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 })
            else { throw invalid("\(fqn): a chunk outside the tensor's \(shape)") }
            let (bytes, source) = try slice(fqn, offsets)
            guard let piece = try TorchSave.read(bytes, source: source).tensorValue, piece.shape == sizes else {
                throw CheckpointError("\(source): not a tensor of the chunk's size \(sizes)")
            }
            var box = whole
            for d in 0..<shape.count { box = box.narrowed(d, start: offsets[d], length: sizes[d]) }
            Ops.copy(piece.dtype == dtype ? piece : piece.cast(to: dtype), into: box)
            covered += sizes.reduce(1, *)
        }
        guard covered == shape.reduce(1, *) else {
            throw invalid("\(fqn): its chunks cover \(covered) of \(shape.reduce(1, *)) elements")
        }
        return whole
    }
}

extension PickleValue {
    /// An object's BUILD state whatever its form (a dict, or a tuple given to `__setstate__`).
    var objectState: PickleValue? {
        if case .object(let o) = self { return o.state }
        return nil
    }
}
