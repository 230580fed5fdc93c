/// The only classes and functions a pickle may name here: what `torch.save`, PyTorch DCP's `.metadata` and
/// Megatron's checkpoints (its `SAFE_GLOBALS`, `megatron/core/safe_globals.py`) use. Naming them constructs nothing:
/// the reader records them as data. Any other global is refused by name.
public enum PickleGlobals {
    public static let rebuildTensor = PickleGlobal("torch._utils", "_rebuild_tensor_v2")
    public static let rebuildParameter = PickleGlobal("torch._utils", "_rebuild_parameter")
    /// `_rebuild_from_type_v2(_rebuild_tensor_v2, torch.Tensor, args, attributes)`: how torch.save pickles a tensor
    /// carrying Python attributes (Megatron's fp32 main copies keep their parameter's tensor-parallel attributes).
    public static let rebuildFromType = PickleGlobal("torch._tensor", "_rebuild_from_type_v2")
    public static let torchTensor = PickleGlobal("torch", "Tensor")
    public static let torchSize = PickleGlobal("torch", "Size")
    public static let getLayout = PickleGlobal("torch.serialization", "_get_layout")
    public static let orderedDict = PickleGlobal("collections", "OrderedDict")
    public static let namespace = PickleGlobal("argparse", "Namespace")
    /// How protocol 2 pickles `bytes`: `_codecs.encode(text, 'latin1')`.
    public static let codecsEncode = PickleGlobal("_codecs", "encode")

    /// Storage classes by dtype, as torch.save names them.
    public static let storages: [(String, DTypeName)] = [
        ("FloatStorage", .float32), ("BFloat16Storage", .bfloat16), ("HalfStorage", .float16), ("LongStorage", .int64),
        ("IntStorage", .int32), ("BoolStorage", .bool), ("ByteStorage", .uint8), ("DoubleStorage", .float64),
        ("CharStorage", .int8), ("ShortStorage", .int16), ("Float8_e4m3fnStorage", .float8E4M3),
        ("Float8_e5m2Storage", .float8E5M2),
    ]

    /// torch's dtype names (`torch.float32`, a bare global) and storage element types.
    public enum DTypeName: String, CaseIterable, Sendable {
        case float32, bfloat16, float16, int64, int32, bool, uint8, float64, int8, int16
        case float8E4M3 = "float8_e4m3fn", float8E5M2 = "float8_e5m2"
    }

    static let dcp = "torch.distributed.checkpoint"
    static let allowed: Set<PickleGlobal> = {
        var names: [PickleGlobal] = [rebuildTensor, rebuildParameter, rebuildFromType, torchTensor, torchSize, getLayout, orderedDict, namespace, codecsEncode,
                                     PickleGlobal("torch", "device"), PickleGlobal("torch._C", "Generator")]
        names += storages.map { PickleGlobal("torch", $0.0) }
        names += DTypeName.allCases.map { PickleGlobal("torch", $0.rawValue) }
        names += ["Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata", "BytesStorageMetadata",
                  "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"].map { PickleGlobal("\(dcp).metadata", $0) }
        names.append(PickleGlobal("\(dcp).filesystem", "_StorageInfo"))
        names += ["SavePlan", "WriteItem", "WriteItemType", "TensorWriteData"].map { PickleGlobal("\(dcp).planner", $0) }
        // Megatron's SAFE_GLOBALS: namespaces, paths, numpy RNG state, its enums and configs.
        names += [PickleGlobal("types", "SimpleNamespace"), PickleGlobal("pathlib", "PosixPath"), PickleGlobal("_io", "BytesIO"),
                  PickleGlobal("signal", "Signals"), PickleGlobal("numpy.core.multiarray", "_reconstruct"),
                  PickleGlobal("numpy._core.multiarray", "_reconstruct"), PickleGlobal("numpy", "ndarray"),
                  PickleGlobal("numpy", "dtype"), PickleGlobal("numpy.dtypes", "UInt32DType"),
                  PickleGlobal("megatron.core.enums", "ModelType"),
                  PickleGlobal("megatron.core.optimizer.optimizer_config", "OptimizerConfig"),
                  PickleGlobal("megatron.core.optimizer", "OptimizerConfig")]
        names += ["RerunDiagnostic", "RerunMode", "RerunState"].map { PickleGlobal("megatron.core.rerun_state_machine", $0) }
        names += ["AttnBackend", "CudaGraphModule", "CudaGraphScope", "InferenceCudaGraphScope", "AttnMaskType", "AttnType",
                  "LayerType", "ModelType"].map { PickleGlobal("megatron.core.transformer.enums", $0) }
        return Set(names)
    }()

    /// `global` if the reader accepts it, else an error naming it.
    static func require(_ global: PickleGlobal) throws -> PickleGlobal {
        guard allowed.contains(global) else {
            throw PickleError("the pickle names \(global), which is not a checkpoint class this reader accepts "
                + "(it reads tensors, DCP metadata, argparse.Namespace and Megatron's enums; nothing is ever executed)")
        }
        return global
    }

    /// The dtype a bare `torch.<dtype>` global names.
    public static func dtype(_ value: PickleValue) -> DTypeName? {
        guard case .global(let g) = value, g.module == "torch" else { return nil }
        return DTypeName(rawValue: g.name)
    }
}
