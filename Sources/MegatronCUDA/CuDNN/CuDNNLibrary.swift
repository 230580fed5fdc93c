import CCUDA
import Foundation

/// An error from cuDNN: which call failed, its status and cuDNN's own words.
public struct CuDNNError: Error, CustomStringConvertible, Equatable {
    public var call: String
    public var status: Int32
    public var message: String

    public init(call: String, status: Int32, message: String) {
        (self.call, self.status, self.message) = (call, status, message)
    }

    /// True for CUDNN_STATUS_NOT_SUPPORTED (and its sub-codes 3000..3999): no engine takes the graph.
    public var isNotSupported: Bool { status / 1000 == CuDNNBackend.statusNotSupported / 1000 }

    public var description: String { "cuDNN call \(call) failed with status \(status): \(message)" }
}

/// cuDNN 9, opened with dlopen the first time it is asked for (nothing links against it).
///
/// `MEGATRON_CUDNN_PATH`, when set, is the one file tried; otherwise `libcudnn.so.9`, then
/// `libcudnn.so`, from the loader's search path (PyTorch's pip wheels put it under
/// `site-packages/nvidia/cudnn/lib`).
///
///     let cudnn = try CuDNNLibrary.load()          // throws CUDAError.libraryUnavailable with what to install
///     print(cudnn.version)                         // 91900 for 9.19.0
public struct CuDNNLibrary: @unchecked Sendable {
    public let table: CCUDACuDNN

    /// The environment variable naming libcudnn's full path.
    public static let pathVariable = "MEGATRON_CUDNN_PATH"

    // Resolved once per process from the environment at first use; the Result keeps the first error.
    private static let shared: Result<CuDNNLibrary, CUDAError> = open(path: ProcessInfo.processInfo.environment[pathVariable])

    /// The process's cuDNN (loaded on the first call).
    public static func load() throws -> CuDNNLibrary { try shared.get() }

    /// Opens cuDNN from `path` (or the default sonames when nil) without caching: for tests and tools.
    public static func open(path: String?) -> Result<CuDNNLibrary, CUDAError> {
        var buffer = [CChar](repeating: 0, count: 1024)
        let table = buffer.withUnsafeMutableBufferPointer { error in
            if let path, !path.isEmpty {
                return path.withCString { ccuda_load_cudnn($0, error.baseAddress!, error.count) }
            }
            return ccuda_load_cudnn(nil, error.baseAddress!, error.count)
        }
        guard table.library != nil else { return .failure(.libraryUnavailable(String(cString: buffer))) }
        return .success(CuDNNLibrary(table: table))
    }

    /// cudnnGetVersion: major * 10000 + minor * 100 + patch for cuDNN 9 (91900 is 9.19.0).
    public var version: Int { table.cudnnGetVersion() }

    /// Throws `CuDNNError` unless `status` is CUDNN_STATUS_SUCCESS; the message is cuDNN's error
    /// string plus its last-error text when the library has one.
    func check(_ status: cudnnStatus_t, _ call: @autoclosure () -> String) throws {
        guard status != CuDNNBackend.statusSuccess else { return }
        var message = String(cString: table.cudnnGetErrorString(status))
        if let lastError = table.cudnnGetLastErrorString {
            var buffer = [CChar](repeating: 0, count: 1024)
            lastError(&buffer, buffer.count)
            let detail = String(cString: buffer)
            if !detail.isEmpty { message += " (\(detail))" }
        }
        throw CuDNNError(call: call(), status: status, message: message)
    }
}
