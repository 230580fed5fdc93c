import CCUDA

/// The NVIDIA libraries, opened with dlopen the first time a GPU feature needs them.
///
/// Nothing links against CUDA at build time: on a machine without a driver, the first call
/// throws `CUDAError.libraryUnavailable` naming the library and what to install, and CPU code
/// keeps working.
///
///     let driver = try CUDALibraries.driver()   // opens libcuda.so.1 and calls cuInit
public enum CUDALibraries {
    // Each table is resolved once per process; the Result keeps the first error for later callers.
    private static let driverTable: Result<CCUDADriver, CUDAError> = {
        let (table, message) = load { ccuda_load_driver($0, $1) }
        guard table.library != nil else { return .failure(.libraryUnavailable(message)) }
        let status = table.cuInit(0)
        if status != 0 {
            let name = errorName(table, status)
            return .failure(.noDevice(
                "libcuda.so.1 loaded but cuInit failed with \(name) (\(status)): "
                    + "no usable NVIDIA GPU or driver (check nvidia-smi and CUDA_VISIBLE_DEVICES)"))
        }
        return .success(table)
    }()

    private static let nvrtcTable: Result<CCUDANVRTC, CUDAError> = {
        let (table, message) = load { ccuda_load_nvrtc($0, $1) }
        return table.library != nil ? .success(table) : .failure(.libraryUnavailable(message))
    }()

    private static let cublasLtTable: Result<CCUDACublasLt, CUDAError> = {
        let (table, message) = load { ccuda_load_cublaslt($0, $1) }
        return table.library != nil ? .success(table) : .failure(.libraryUnavailable(message))
    }()

    /// The driver API (libcuda.so.1), initialized with cuInit.
    public static func driver() throws -> CCUDADriver { try driverTable.get() }
    /// The runtime compiler (libnvrtc.so.13, .12 or unversioned).
    public static func nvrtc() throws -> CCUDANVRTC { try nvrtcTable.get() }
    /// cuBLASLt (libcublasLt.so.13, .12 or unversioned).
    public static func cublasLt() throws -> CCUDACublasLt { try cublasLtTable.get() }

    /// Runs a C loader with an error buffer; returns its table and error text.
    private static func load<Table>(_ loader: (UnsafeMutablePointer<CChar>, Int) -> Table) -> (Table, String) {
        var buffer = [CChar](repeating: 0, count: 1024)
        let table = buffer.withUnsafeMutableBufferPointer { loader($0.baseAddress!, $0.count) }
        return (table, String(cString: buffer))
    }

    static func errorName(_ driver: CCUDADriver, _ status: CUresult) -> String {
        var name: UnsafePointer<CChar>?
        _ = driver.cuGetErrorName(status, &name)
        return name.map { String(cString: $0) } ?? "CUDA_ERROR_\(status)"
    }
}

/// Throws `CUDAError.driver` unless `status` is CUDA_SUCCESS.
@inline(__always)
func check(_ status: CUresult, _ call: @autoclosure () -> String) throws {
    if status != 0 { throw driverError(status, call()) }
}

func driverError(_ status: CUresult, _ call: String) -> CUDAError {
    guard let driver = try? CUDALibraries.driver() else {
        return .driver(call: call, code: status, name: "CUDA_ERROR_\(status)", message: "")
    }
    var text: UnsafePointer<CChar>?
    _ = driver.cuGetErrorString(status, &text)
    return .driver(call: call, code: status, name: CUDALibraries.errorName(driver, status),
                   message: text.map { String(cString: $0) } ?? "unknown error")
}
