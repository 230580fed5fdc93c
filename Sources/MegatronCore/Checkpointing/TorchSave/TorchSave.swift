import Foundation
import MegatronTensor

/// `torch.save` / `torch.load` without torch: a stored ZIP holding `<prefix>/data.pkl` (the object, tensors as
/// `torch._utils._rebuild_tensor_v2` over persistent storage ids), `<prefix>/data/<key>` (each storage's raw
/// little-endian bytes), `byteorder` and `version`.
///
/// ```swift
/// let state = try TorchSave.read(Data(contentsOf: url), source: url.path)   // tensors as .tensor
/// let bytes = try TorchSave.write(.list([.tensor(t)]))
/// ```
public enum TorchSave {
    /// The object `data` holds, each tensor whose dtype this build has read into a `.tensor` (others, e.g. the
    /// empty uint8 `_extra_state` of Transformer Engine, stay the rebuild call they are pickled as).
    public static func read(_ data: Data, source: String) throws -> PickleValue {
        let zip = try StoredZip(data, source: source)
        guard let pickle = zip.entries.first(where: { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }) else {
            throw CheckpointError("\(source): not a torch.save archive: no <prefix>/data.pkl")
        }
        let prefix = String(pickle.name.dropLast("data.pkl".count))
        if let order = try zip.entryIfPresent(prefix + "byteorder"), String(decoding: order, as: UTF8.self) != "little" {
            throw CheckpointError("\(source): saved on a big-endian machine, which this build does not read")
        }
        let value: PickleValue
        do {
            value = try PickleReader.read(try zip.entry(named: pickle.name))
        } catch let error as PickleError {
            throw CheckpointError("\(source): \(pickle.name): \(error.description)")
        }
        return try resolveTensors(value) { key in
            guard let bytes = try zip.entryIfPresent(prefix + "data/" + key) else {
                throw CheckpointError("\(source): the pickle refers to storage \(key), which the archive lacks")
            }
            return bytes
        }
    }

    /// `value` with each `_rebuild_tensor_v2(storage, offset, size, stride, ...)` of a known dtype made a tensor
    /// (and `_rebuild_parameter(tensor, ...)` its tensor, `_rebuild_from_type_v2` of a plain tensor with attributes
    /// the tensor without them).
    static func resolveTensors(_ value: PickleValue, storage: (String) throws -> Data) throws -> PickleValue {
        func walk(_ v: PickleValue) throws -> PickleValue {
            switch v {
            case .tuple(let items): return .tuple(try items.map(walk))
            case .list(let items): return .list(try items.map(walk))
            case .dict(let pairs): return .dict(try pairs.map { .init($0.key, try walk($0.value)) })
            case .object(let o) where o.callable == PickleGlobals.rebuildTensor:
                return try tensor(o, storage: storage).map(PickleValue.tensor) ?? v
            case .object(let o) where o.callable == PickleGlobals.rebuildParameter:
                return try o.arguments.first.map(walk) ?? v
            case .object(let o) where o.callable == PickleGlobals.rebuildFromType:
                return try walk(.object(try plainTensorRebuild(o)))
            case .object(var o):
                o.arguments = try o.arguments.map(walk)
                o.state = try o.state.map(walk)
                return .object(o)
            default: return v
            }
        }
        return try walk(value)
    }

    /// The `_rebuild_tensor_v2` call inside `_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, attributes)`;
    /// the attributes (Megatron's tensor-parallel markers) are not kept. Another function or tensor type is an error.
    static func plainTensorRebuild(_ o: PickleObject) throws -> PickleObject {
        guard o.arguments.count == 4, case .global(let function) = o.arguments[0], function == PickleGlobals.rebuildTensor,
              case .global(let type) = o.arguments[1], type == PickleGlobals.torchTensor, let arguments = o.arguments[2].elements
        else { throw PickleError("a tensor rebuilt with attributes (_rebuild_from_type_v2) of unexpected form") }
        return PickleObject(PickleGlobals.rebuildTensor, arguments: arguments)
    }

    /// The tensor a rebuild call describes, or nil when its dtype is not one this build holds.
    static func tensor(_ o: PickleObject, storage: (String) throws -> Data) throws -> Tensor? {
        let args = o.arguments
        guard args.count >= 4, case .persistent(let id) = args[0], let pid = id.elements, pid.count == 5,
              pid[0].stringValue == "storage", case .global(let storageClass) = pid[1], let key = pid[2].stringValue,
              let numel = pid[4].intValue, let offset = args[1].intValue, let shape = args[2].intArray, let strides = args[3].intArray,
              shape.count == strides.count
        else { throw PickleError("a tensor rebuild call of unexpected form") }
        guard let name = PickleGlobals.storages.first(where: { $0.0 == storageClass.name })?.1 else {
            throw PickleError("unknown storage class \(storageClass)")
        }
        guard let dtype = DType(torch: name) else { return nil }
        let bytes = try storage(key)
        guard numel >= 0, bytes.count == numel * dtype.byteSize else {
            throw PickleError("storage \(key) holds \(bytes.count) bytes, not \(numel) x \(dtype.byteSize)")
        }
        let flat = Tensor(zeros: [max(numel, 1)], dtype: dtype)
        bytes.withUnsafeBytes { flat.pointer(as: UInt8.self).update(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: bytes.count) }
        let last = offset + zip(shape, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
        guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }), offset >= 0,
              shape.contains(0) || last < numel else {
            throw PickleError("a tensor of shape \(shape), strides \(strides) at offset \(offset) exceeds its storage of \(numel)")
        }
        return Tensor(storage: flat.storage, shape: shape, strides: strides, offset: offset, dtype: dtype).madeContiguous()
    }

    /// `value` as torch.save writes it, under `prefix` (torch uses `archive` for streams and the file's stem for
    /// files). Tensors are copied to the host, one storage each. `zip64Above`: see `StoredZip.write`.
    public static func write(_ value: PickleValue, prefix: String = "archive", zip64Above: Int = 0xFFFF_FFFF) throws -> Data {
        var storages: [Data] = []
        let pickle = try PickleWriter.write(value) { t in
            let host = t.to(.cpu).madeContiguous()
            guard let name = host.dtype.torchName, let storageClass = PickleGlobals.storages.first(where: { $0.1 == name })?.0 else {
                throw PickleError("dtype \(host.dtype) has no torch storage")
            }
            let key = String(storages.count)
            storages.append(Data(bytes: host.pointer(as: UInt8.self), count: host.count * host.dtype.byteSize))
            let id = PickleValue.tuple([.string("storage"), .global(PickleGlobal("torch", storageClass)), .string(key), .string("cpu"),
                                        .int(host.count)])
            return .object(PickleObject(PickleGlobals.rebuildTensor, arguments: [
                .persistent(id), .int(0), .tuple(host.shape.map(PickleValue.int)),
                .tuple(Shape.contiguousStrides(host.shape).map(PickleValue.int)), .bool(false),
                .object(PickleObject(PickleGlobals.orderedDict)),
            ]))
        }
        var entries: [(String, Data)] = [("\(prefix)/data.pkl", pickle), ("\(prefix)/.format_version", Data("1".utf8)),
                                         ("\(prefix)/.storage_alignment", Data("64".utf8)), ("\(prefix)/byteorder", Data("little".utf8))]
        entries += storages.enumerated().map { ("\(prefix)/data/\($0.offset)", $0.element) }
        entries.append(("\(prefix)/version", Data("3\n".utf8)))
        return try StoredZip.write(entries, zip64Above: zip64Above)
    }
}

extension DType {
    /// This build's dtype for a torch dtype, or nil when it has none.
    public init?(torch name: PickleGlobals.DTypeName) {
        switch name {
        case .float32: self = .float32
        case .bfloat16: self = .bfloat16
        case .float16: self = .float16
        case .int64: self = .int64
        case .int32: self = .int32
        case .bool: self = .bool
        case .float8E4M3: self = .float8E4M3
        case .float8E5M2: self = .float8E5M2
        case .uint8, .float64, .int8, .int16: return nil
        }
    }

    /// torch's name for this dtype.
    public var torchName: PickleGlobals.DTypeName? {
        switch self {
        case .float32: .float32
        case .bfloat16: .bfloat16
        case .float16: .float16
        case .int64: .int64
        case .int32: .int32
        case .bool: .bool
        case .float8E4M3: .float8E4M3
        case .float8E5M2: .float8E5M2
        }
    }
}
