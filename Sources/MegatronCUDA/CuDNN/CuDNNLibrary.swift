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
/// `MEGATRON_CUDNN_PATH`, when set, is the one file tried. Otherwise `libcudnn.so.9`, then
/// `libcudnn.so`, from the loader's search path, then the copies pip wheels install
/// (`nvidia-cudnn-cu12` / `-cu13`, which PyTorch brings) under the usual Python prefixes
/// (`installedCandidates`), so a machine with PyTorch needs no LD_LIBRARY_PATH for cuDNN.
///
///     let cudnn = try CuDNNLibrary.load()          // throws CUDAError.libraryUnavailable with what to install
///     print(cudnn.version)                         // 91900 for 9.19.0
public struct CuDNNLibrary: @unchecked Sendable {
    public let table: CCUDACuDNN

    /// The environment variable naming libcudnn's full path.
    public static let pathVariable = "MEGATRON_CUDNN_PATH"

    // Resolved once per process from the environment at first use; the Result keeps the first error.
    private static let shared: Result<CuDNNLibrary, CUDAError> = open(environment: ProcessInfo.processInfo.environment)

    /// The process's cuDNN (loaded on the first call).
    public static func load() throws -> CuDNNLibrary { try shared.get() }

    /// Opens cuDNN as `load` would under `environment`, without caching: MEGATRON_CUDNN_PATH alone when
    /// set, else the sonames and then `installedCandidates`. The error is the sonames' (what to install).
    public static func open(environment: [String: String]) -> Result<CuDNNLibrary, CUDAError> {
        if let path = environment[pathVariable], !path.isEmpty { return open(path: path) }
        let fromSearchPath = open(path: nil)
        guard case .failure = fromSearchPath else { return fromSearchPath }
        for path in installedCandidates(environment: environment) {
            if case .success(let library) = open(path: path) { return .success(library) }
        }
        return fromSearchPath
    }

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

    /// Existing `nvidia/cudnn/lib/libcudnn.so.9` files of pip-installed cuDNN wheels, in the order tried:
    /// the active virtualenv or conda environment, the user's site, then the system's Python prefixes.
    /// cuDNN opens its engine sublibraries from the same folder, so the path alone is enough.
    public static func installedCandidates(environment: [String: String], fileManager: FileManager = .default) -> [String] {
        let home = environment["HOME"].map { ["\($0)/.local"] } ?? []
        let prefixes = [environment["VIRTUAL_ENV"], environment["CONDA_PREFIX"]].compactMap { $0 } + home
            + ["/usr/local", "/usr", "/opt/conda"]
        var found: [String] = []
        for prefix in prefixes {
            let lib = "\(prefix)/lib"
            let pythons = ((try? fileManager.contentsOfDirectory(atPath: lib)) ?? []).filter { $0.hasPrefix("python3") }.sorted()
            for python in pythons {
                for packages in ["site-packages", "dist-packages"] {
                    let path = "\(lib)/\(python)/\(packages)/nvidia/cudnn/lib/libcudnn.so.9"
                    if fileManager.fileExists(atPath: path) { found.append(path) }
                }
            }
        }
        return found
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
