import Foundation

/// Compiled kernel images on disk, so NVRTC runs once per (source, options, architecture,
/// compiler version) on a machine rather than at every start.
///
/// The directory is `$MEGATRON_KERNEL_CACHE`, else `$XDG_CACHE_HOME/megatron-swift/kernels`, else
/// `~/.cache/megatron-swift/kernels`. A cache that cannot be written is skipped silently: it only
/// saves time.
public struct KernelCache: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// The default location, from the environment as described above.
    public static func defaultCache(environment: [String: String] = ProcessInfo.processInfo.environment) -> KernelCache {
        if let path = environment["MEGATRON_KERNEL_CACHE"], !path.isEmpty {
            return KernelCache(directory: URL(fileURLWithPath: path))
        }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory()).appendingPathComponent(".cache")
        return KernelCache(directory: base.appendingPathComponent("megatron-swift/kernels"))
    }

    /// The file name for one compilation: a hash of source and options, then the target and the
    /// NVRTC version, which change the machine code without changing the source.
    public static func key(source: String, options: [String], architecture: String, compilerVersion: String) -> String {
        let material = source + "\u{0}" + options.joined(separator: "\u{0}")
        return "\(SHA256.hexDigest(Array(material.utf8)))-\(architecture)-nvrtc\(compilerVersion)"
    }

    public func load(key: String) -> [UInt8]? {
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(key).path) else {
            return nil
        }
        return data.isEmpty ? nil : [UInt8](data)
    }

    /// Writes atomically: to a temporary file of its own, then renamed over `key`. A concurrent reader
    /// sees no file or a whole one, and writers of the same key (threads of one process, or several
    /// processes sharing the directory) never write into the same temporary file.
    public func store(key: String, image: [UInt8]) {
        let temporary = directory.appendingPathComponent("\(key).\(UUID().uuidString).tmp")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data(image).write(to: temporary, options: .withoutOverwriting)
            if rename(temporary.path, directory.appendingPathComponent(key).path) != 0 {
                try? FileManager.default.removeItem(at: temporary)
            }
        } catch {
            // Caching is an optimization; a read-only home directory must not stop training.
            try? FileManager.default.removeItem(at: temporary)
        }
    }
}
