import CCUDA
import Foundation
import MegatronTensor

/// libnccl.so.2, opened on first use (nothing links against NCCL, so CPU-only machines run the same binary).
enum NCCLLibrary {
    private static let table: Result<CCUDANCCL, CommunicatorError> = {
        // NVLink SHARP (multicast) is left off on the lent machines; a user's explicit setting wins.
        setenv("NCCL_NVLS_ENABLE", "0", 0)
        var message = [CChar](repeating: 0, count: 1024)
        let table = ccuda_load_nccl(&message, message.count)
        guard table.library != nil else {
            return .failure(CommunicatorError("loading NCCL", String(cString: message)))
        }
        return .success(table)
    }()

    static func load() throws -> CCUDANCCL { try table.get() }

    /// Throws a `CommunicatorError` naming `operation` and NCCL's reason unless `status` is ncclSuccess.
    static func check(_ status: ncclResult_t, _ operation: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        let reason = (try? load()).map { String(cString: $0.ncclGetErrorString(status)) } ?? "error \(status)"
        throw CommunicatorError(operation(), "NCCL returned \(status): \(reason)")
    }

    /// ncclDataType_t of `dtype` (bool moves as bytes).
    static func dataType(_ dtype: DType) -> Int32 {
        switch dtype {
        case .float32: Int32(CNCCL_FLOAT32)
        case .float16: Int32(CNCCL_FLOAT16)
        case .bfloat16: Int32(CNCCL_BFLOAT16)
        case .int32: Int32(CNCCL_INT32)
        case .int64: Int32(CNCCL_INT64)
        case .float8E4M3: Int32(CNCCL_FLOAT8E4M3)
        case .float8E5M2: Int32(CNCCL_FLOAT8E5M2)
        case .bool: Int32(CNCCL_UINT8)
        }
    }

    static func reduction(_ op: ReduceOp) -> Int32 {
        switch op {
        case .sum: Int32(CNCCL_SUM)
        case .average: Int32(CNCCL_AVG)
        case .max: Int32(CNCCL_MAX)
        case .scaledSum: preconditionFailure("scaledSum needs an operator made per communicator (ncclRedOpCreatePreMulSum)")
        }
    }
}

/// The 128-byte id every rank of a new NCCL communicator must share (rank 0 makes it, the rendezvous store
/// hands it to the others).
public struct NCCLUniqueID: Sendable, Equatable {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 128 else {
            throw CommunicatorError("NCCLUniqueID", "an NCCL unique id has 128 bytes, got \(bytes.count)")
        }
        self.bytes = bytes
    }

    /// A fresh id (ncclGetUniqueId); call on one rank only.
    public static func make() throws -> NCCLUniqueID {
        let nccl = try NCCLLibrary.load()
        var id = ncclUniqueId()
        try NCCLLibrary.check(nccl.ncclGetUniqueId(&id), "ncclGetUniqueId")
        return try NCCLUniqueID(bytes: withUnsafeBytes(of: &id) { Array($0) })
    }

    var raw: ncclUniqueId {
        var id = ncclUniqueId()
        withUnsafeMutableBytes(of: &id) { $0.copyBytes(from: bytes) }
        return id
    }
}
