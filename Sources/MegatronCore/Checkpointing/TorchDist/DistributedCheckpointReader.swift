import Foundation
import MegatronTensor

/// Reads boxes of a torch_dist (PyTorch DCP) checkpoint: the `.metadata` is parsed once, and each `read` opens
/// only the `.distcp` items whose chunks overlap the box asked for, so a rank loads its own part of every tensor
/// whatever layout wrote them.
///
/// ```swift
/// let reader = try DistributedCheckpointReader(directory: dir)
/// let rows = try reader.read("embedding.word_embeddings.weight", box: ShardBox(offsets: [0, 0], sizes: [128, 64]))
/// ```
public final class DistributedCheckpointReader {
    public let directory: URL
    struct Location { let file: String, offset: Int, length: Int }
    struct TensorEntry { let shape: [Int], dtype: DType, chunks: [(box: ShardBox, at: Location)] }
    private var tensors: [String: TensorEntry] = [:]
    private var objects: [String: Location] = [:]
    private var files: [String: Data] = [:]
    /// Sizes and checksums of the `.distcp` files, verified when each is first opened (checkpoints written here).
    public var expectedFiles: [String: CheckpointDirectory.Fingerprint]?

    /// Parses `directory/.metadata`.
    public init(directory: URL) throws {
        self.directory = directory
        let metadataURL = directory.appendingPathComponent(".metadata")
        guard let metadataBytes = try? Data(contentsOf: metadataURL) else {
            throw CheckpointError("\(metadataURL.path): missing or unreadable; the torch_dist checkpoint is incomplete")
        }
        let metadata: PickleValue
        do { metadata = try PickleReader.read(metadataBytes) } catch let error as PickleError {
            throw CheckpointError("\(metadataURL.path): \(error.description)")
        }
        guard let entries = metadata.attribute("state_dict_metadata")?.pairs, let storage = metadata.attribute("storage_data")?.pairs else {
            throw invalid("is not a DCP Metadata (no state_dict_metadata / storage_data)")
        }
        var locations: [String: Location] = [:]
        for pair in storage {
            guard let fqn = pair.key.attribute("fqn")?.stringValue, let path = pair.value.attribute("relative_path")?.stringValue,
                  let offset = pair.value.attribute("offset")?.intValue, let length = pair.value.attribute("length")?.intValue,
                  !path.contains("/"), offset >= 0, length >= 0
            else { throw invalid("a storage_data entry of unexpected form") }
            locations[Self.locationKey(fqn, pair.key.attribute("offset")?.intArray)] = Location(file: path, offset: offset, length: length)
        }
        for entry in entries {
            guard let fqn = entry.key.stringValue, case .object(let o) = entry.value else { throw invalid("an entry of unexpected form") }
            switch o.callable.name {
            case "TensorStorageMetadata": tensors[fqn] = try tensorEntry(fqn, entry.value, locations)
            case "BytesStorageMetadata":
                guard let at = locations[Self.locationKey(fqn, nil)] else { throw invalid("\(fqn) has no storage entry") }
                objects[fqn] = at
            default: throw invalid("\(fqn) is described by \(o.callable), not tensor or bytes metadata")
            }
        }
    }

    public var tensorKeys: [String] { tensors.keys.sorted() }
    public var objectKeys: [String] { objects.keys.sorted() }

    /// The global shape of tensor `key`, or nil when the checkpoint has no such tensor.
    public func shape(of key: String) -> [Int]? { tensors[key]?.shape }

    /// The boxes of tensor `key`'s saved chunks (empty when there is no such tensor).
    public func chunkBoxes(of key: String) -> [ShardBox] { tensors[key]?.chunks.map(\.box) ?? [] }

    /// The `box` of tensor `key` (in the checkpoint's dtype, or cast to `dtype`): every saved chunk overlapping it
    /// copied in. Parts of the box outside the saved tensor stay zero (a vocabulary padded for another layout); parts
    /// inside it that no chunk covers are an error.
    public func read(_ key: String, box: ShardBox, dtype: DType? = nil) throws -> Tensor {
        guard let entry = tensors[key] else { throw invalid("holds no tensor \(key)") }
        guard box.offsets.count == entry.shape.count else {
            throw invalid("\(key) has \(entry.shape.count) dimensions (\(entry.shape)); asked for \(box)")
        }
        let result = Tensor(zeros: box.sizes, dtype: dtype ?? entry.dtype)
        var covered = 0
        for (chunkBox, at) in entry.chunks {
            guard let overlap = chunkBox.intersection(box) else { continue }
            let source = "\(directory.appendingPathComponent(at.file).path) (\(key))"
            guard let piece = try TorchSave.read(try bytes(at, key), source: source).tensorValue, piece.shape == chunkBox.sizes else {
                throw CheckpointError("\(source): not a tensor of the chunk's size \(chunkBox.sizes)")
            }
            let from = overlap.relative(to: chunkBox.offsets).view(of: piece)
            Ops.copy(from.dtype == result.dtype ? from : from.cast(to: result.dtype), into: overlap.relative(to: box.offsets).view(of: result))
            covered += overlap.count
        }
        let saved = ShardBox(whole: entry.shape).intersection(box)?.count ?? 0
        guard covered == saved else { throw invalid("\(key): its chunks cover \(covered) of the \(saved) elements of \(box)") }
        return result
    }

    /// The object `key` (the value `torch.save` stored).
    public func object(_ key: String) throws -> PickleValue {
        guard let at = objects[key] else { throw invalid("holds no object \(key)") }
        return try TorchSave.read(try bytes(at, key), source: "\(directory.appendingPathComponent(at.file).path) (\(key))")
    }

    /// The non-sharded state (args, iteration...): a legacy `common.pt` if present, else `common_state`.
    public func common() throws -> PickleValue {
        let legacy = directory.appendingPathComponent("common.pt")
        if FileManager.default.fileExists(atPath: legacy.path) {
            return try TorchSave.read(Data(contentsOf: legacy), source: legacy.path)
        }
        guard objects[DistributedCheckpoint.commonKey] != nil, let common = try object(DistributedCheckpoint.commonKey)[0] else {
            throw invalid("holds no \(DistributedCheckpoint.commonKey) and the directory no common.pt: args and iteration are missing")
        }
        return common
    }

    private func bytes(_ at: Location, _ key: String) throws -> Data {
        let url = directory.appendingPathComponent(at.file)
        if files[at.file] == nil {
            guard let data = try? Data(contentsOf: url, options: .alwaysMapped) else { throw CheckpointError("\(url.path): missing") }
            if let expected = expectedFiles?[at.file] {
                let crc = Int(data.withUnsafeBytes { CRC32C.checksum($0) })
                guard expected.bytes == data.count, expected.crc32c == crc else {
                    throw CheckpointError("\(url.path): size or checksum differs from the one recorded; the file is corrupt")
                }
            }
            files[at.file] = data
        }
        let data = files[at.file]!
        guard at.offset + at.length <= data.count else { throw CheckpointError("\(url.path): \(key) lies past the end of the file") }
        return data.subdata(in: at.offset..<(at.offset + at.length))
    }

    private func tensorEntry(_ fqn: String, _ meta: PickleValue, _ locations: [String: Location]) throws -> TensorEntry {
        guard let shape = meta.attribute("size")?.intArray, shape.allSatisfy({ $0 >= 0 }),
              let dtypeValue = meta.attribute("properties")?.objectState?[0],
              let name = PickleGlobals.dtype(dtypeValue), let dtype = DType(torch: name),
              let chunks = meta.attribute("chunks")?.elements
        else { throw invalid("\(fqn): tensor metadata of unexpected form (or a dtype this build does not hold)") }
        let boxes = try chunks.map { chunk -> (box: ShardBox, at: Location) in
            guard let offsets = chunk.attribute("offsets")?.intArray, let sizes = chunk.attribute("sizes")?.intArray,
                  offsets.count == shape.count, sizes.count == shape.count,
                  zip(zip(offsets, sizes), shape).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 })
            else { throw invalid("\(fqn): a chunk outside the tensor's \(shape)") }
            guard let at = locations[Self.locationKey(fqn, offsets)] else { throw invalid("\(fqn) has no storage entry for chunk \(offsets)") }
            return (ShardBox(offsets: offsets, sizes: sizes), at)
        }
        return TensorEntry(shape: shape, dtype: dtype, chunks: boxes)
    }

    static func locationKey(_ fqn: String, _ offsets: [Int]?) -> String {
        fqn + "@" + (offsets?.map(String.init).joined(separator: ",") ?? "bytes")
    }

    private func invalid(_ why: String) -> CheckpointError {
        CheckpointError("\(directory.appendingPathComponent(".metadata").path): \(why)")
    }
}
