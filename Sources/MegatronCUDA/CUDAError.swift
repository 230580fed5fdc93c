import Foundation

/// Errors raised by the CUDA layer. Each case carries the words a user needs to act on it.
public enum CUDAError: Error, CustomStringConvertible, Equatable {
    /// A shared library could not be opened or lacks a symbol; the message names it and what to install.
    case libraryUnavailable(String)
    /// A driver API call failed.
    case driver(call: String, code: Int32, name: String, message: String)
    /// No CUDA device, or the requested ordinal does not exist.
    case noDevice(String)
    /// NVRTC rejected the source; `log` is NVRTC's compile log.
    case compilation(kernel: String, options: [String], log: String)
    /// An NVRTC call other than compilation failed.
    case nvrtc(call: String, message: String)
    /// A cuBLASLt call failed or found no algorithm.
    case cublas(call: String, status: Int32, message: String)
    /// The caching allocator could not obtain device memory even after releasing its cache.
    case outOfMemory(String)
    /// A caller passed a value the layer cannot use (bad shape, misaligned pointer, ...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .libraryUnavailable(let message): return message
        case .driver(let call, let code, let name, let message):
            return "CUDA driver call \(call) failed: \(name) (\(code)): \(message)"
        case .noDevice(let message): return message
        case .compilation(let kernel, let options, let log):
            return "NVRTC could not compile \(kernel) with options \(options.joined(separator: " ")):\n\(log)"
        case .nvrtc(let call, let message): return "NVRTC call \(call) failed: \(message)"
        case .cublas(let call, let status, let message):
            return "cuBLASLt call \(call) failed with status \(status): \(message)"
        case .outOfMemory(let message): return message
        case .invalidArgument(let message): return message
        }
    }
}

/// Formats a byte count the way memory statistics are read: "1.50 GiB", "512 B".
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while abs(value) >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.2f %@", value, units[unit])
}
